"""Experiment kinds: how each one's config is validated and which module runs it.

``command`` and ``demo.counter`` are built in. Every other kind is a plugin: a distribution
registers, in the ``baton.kinds`` entry-point group, a list of mappings with ``name``,
``config`` (a pydantic model, importable without torch), ``entrypoint`` (the module run as
``python -m``) and ``wheel`` (the wheel this control plane serves that holds it, or None).
The workloads in ``ml/`` register this way (``ml/kinds.py``): the control plane never
imports them by name.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.errors import Invalid
from orchestrator.platforms.wheel import WHEELS

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "baton.kinds"


class CommandConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: str = Field(min_length=1, max_length=100_000)
    # A directory on the worker's own disk: only for a worker on the machine that has it.
    # Code that travels is the experiment's `code` (a bundle or a git ref) instead.
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
    # The served wheel (orchestrator.platforms.wheel.WHEELS) holding the entrypoint, for
    # workers that cannot import it; None: the worker agent itself holds it.
    wheel: str | None = None


BUILT_IN = (
    Kind("command", CommandConfig, None),
    Kind("demo.counter", CounterConfig, "worker.jobs.counter"),
)


def _plugin_kinds() -> Iterator[Kind]:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            specs = entry.load()
            kinds = [Kind(s["name"], s["config"], s["entrypoint"], s.get("wheel")) for s in specs]
        except Exception:
            # One broken plugin must not take the control plane down with it.
            log.exception("kinds of plugin %s (%s) not loaded", entry.name, entry.value)
            continue
        for kind in kinds:
            if kind.wheel is not None and kind.wheel not in WHEELS:
                log.error("kind %s names an unknown wheel %r: not loaded", kind.name, kind.wheel)
                continue
            yield kind


def load_kinds() -> dict[str, Kind]:
    kinds: dict[str, Kind] = {}
    for kind in (*BUILT_IN, *_plugin_kinds()):
        if kind.name in kinds:
            raise RuntimeError(f"experiment kind {kind.name!r} is registered twice")
        kinds[kind.name] = kind
    return kinds


KINDS = load_kinds()


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
