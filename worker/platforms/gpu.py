"""GPU inventory: nvidia-smi where there is one, else torch (CUDA or Apple MPS) when importable."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from worker.platforms.probe import Probe

# Importing torch takes seconds: only worth it where it can find a GPU nvidia-smi did not.
NVIDIA_DEVICE_PATHS = ("/dev/nvidiactl", "/proc/driver/nvidia")


@dataclass(frozen=True)
class Gpus:
    name: str | None = None
    count: int = 0
    memory_mb: int = 0  # of the smallest one: what a job can count on


def from_nvidia_smi(probe: Probe) -> Gpus | None:
    exe = shutil.which("nvidia-smi", path=probe.env.get("PATH"))
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [line.rsplit(",", 1) for line in out.strip().splitlines() if "," in line]
    try:
        memory = min(int(float(mem)) for _, mem in rows) if rows else 0
    except ValueError:
        return None
    return Gpus(name=rows[0][0].strip(), count=len(rows), memory_mb=memory) if rows else None


def _torch() -> Any:
    try:
        import torch  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return torch


def from_torch(probe: Probe) -> Gpus | None:
    nvidia = any(probe.path(p).exists() for p in NVIDIA_DEVICE_PATHS)
    if not nvidia and probe.system != "Darwin":
        return None
    torch = _torch()
    if torch is None:
        return None
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        props = [torch.cuda.get_device_properties(i) for i in range(count)]
        memory = min(p.total_memory for p in props) // (1024 * 1024)
        return Gpus(name=props[0].name, count=count, memory_mb=int(memory))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        # Unified memory: what Metal recommends a process may take.
        recommended = getattr(getattr(torch, "mps", None), "recommended_max_memory", None)
        memory = int(recommended() // (1024 * 1024)) if recommended else 0
        return Gpus(name="Apple MPS", count=1, memory_mb=memory)
    return None


def gpu_inventory(probe: Probe) -> Gpus:
    return from_nvidia_smi(probe) or from_torch(probe) or Gpus()
