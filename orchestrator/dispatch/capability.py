"""Capability classes: experiments with the same needs share one ready set."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Requirement:
    gpu: bool = False
    min_gpu_memory_mb: int = 0
    platforms: tuple[str, ...] = ()

    @classmethod
    def from_resources(cls, resources: dict[str, Any]) -> Requirement:
        memory_mb = round(float(resources.get("min_gpu_memory_gb") or 0) * 1024)
        # Asking for GPU memory implies asking for a GPU.
        gpu = bool(resources.get("gpu")) or memory_mb > 0
        return cls(
            gpu=gpu,
            min_gpu_memory_mb=memory_mb,
            platforms=tuple(sorted(str(p) for p in resources.get("platforms") or ())),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Requirement:
        data = json.loads(raw)
        return cls(
            gpu=data["gpu"],
            min_gpu_memory_mb=data["min_gpu_memory_mb"],
            platforms=tuple(data["platforms"]),
        )


@dataclass(frozen=True)
class Capability:
    """What one worker offers."""

    platform: str = "local"
    gpu_count: int = 0
    gpu_memory_mb: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def satisfies(self, req: Requirement) -> bool:
        if req.gpu and self.gpu_count < 1:
            return False
        if req.min_gpu_memory_mb > self.gpu_memory_mb:
            return False
        return not req.platforms or self.platform in req.platforms


def capability_class(req: Requirement) -> str:
    """A stable, readable name, e.g. ``cpu``, ``gpu``, ``gpu.mem24576``, ``gpu.on-colab+kaggle``."""
    parts = ["gpu" if req.gpu else "cpu"]
    if req.min_gpu_memory_mb:
        parts.append(f"mem{req.min_gpu_memory_mb}")
    if req.platforms:
        parts.append("on-" + "+".join(req.platforms))
    return ".".join(parts)
