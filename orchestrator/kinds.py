"""Experiment kinds: how each one's config is validated and which module runs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ml.arc import configs as arc_configs
from ml.video import configs as video_configs
from orchestrator.errors import Invalid


class CommandConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: str = Field(min_length=1, max_length=100_000)
    workdir: str | None = Field(default=None, max_length=4096)
    env: dict[str, str] = Field(default_factory=dict)


class CounterConfig(BaseModel):
    """The built-in resumable demo: a deterministic hash chain, checkpointed as it goes."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=30, ge=1, le=1_000_000)
    step_seconds: float = Field(default=0.2, ge=0, le=3600)
    checkpoint_every: int = Field(default=5, ge=1)
    fail_at_step: int | None = Field(default=None, ge=0)


@dataclass(frozen=True)
class Kind:
    name: str
    config_model: type[BaseModel]
    # A Python module run as `python -m MODULE`; None for `command`, which runs a shell line.
    entrypoint: str | None


# The workloads' job modules (they import torch; their config modules do not).
ML_ENTRYPOINTS = {
    "ml.arc.ttt": "ml.arc.ttt_job",
    "ml.arc.eval": "ml.arc.eval_job",
    "ml.video.dataset": "ml.video.dataset_job",
    "ml.video.train": "ml.video.train_job",
    "ml.video.compare": "ml.video.compare_job",
}
ML_CONFIGS: dict[str, type[BaseModel]] = {
    **arc_configs.CONFIG_MODELS,
    **video_configs.CONFIG_MODELS,
}

KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("command", CommandConfig, None),
        Kind("demo.counter", CounterConfig, "worker.jobs.counter"),
        *(Kind(name, ML_CONFIGS[name], module) for name, module in ML_ENTRYPOINTS.items()),
    )
}


def get_kind(name: str, *, field: str = "kind") -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        known = ", ".join(sorted(KINDS))
        raise Invalid(
            f"{field}: unknown kind {name!r} (known: {known})",
            errors=[{"loc": ["body", *field.split(".")], "msg": f"unknown kind {name!r}"}],
        ) from None


def validate_config(kind: Kind, config: dict[str, Any], *, field: str = "config") -> dict[str, Any]:
    """The config as the kind's model normalises it; 422 naming each bad field otherwise."""
    try:
        model = kind.config_model.model_validate(config)
    except ValidationError as exc:
        errors = [
            {"loc": ["body", *field.split("."), *map(str, e["loc"])], "msg": e["msg"]}
            for e in exc.errors()
        ]
        message = "; ".join(f"{'.'.join(e['loc'][1:])}: {e['msg']}" for e in errors)
        raise Invalid(message, errors=errors) from None
    return model.model_dump(mode="json")
