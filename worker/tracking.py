"""Tracking that outlives an attempt: every attempt of an experiment logs to one W&B run."""

from __future__ import annotations

import os
from collections.abc import Mapping

WANDB_KEY_ENV = "WANDB_API_KEY"


def wandb_env(*, experiment_id: int, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """With a W&B key configured (it reaches the job with the agent's environment), name the run
    after the experiment and let a resumed attempt continue it instead of starting a new one."""
    environ = os.environ if environ is None else environ
    if not environ.get(WANDB_KEY_ENV):
        return {}
    return {"WANDB_RUN_ID": f"baton-{experiment_id}", "WANDB_RESUME": "allow"}
