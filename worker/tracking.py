"""Tracking that outlives an attempt: every attempt of an experiment logs to one W&B run."""

from __future__ import annotations

from collections.abc import Mapping

WANDB_KEY_ENV = "WANDB_API_KEY"


def wandb_env(*, experiment_id: int, environ: Mapping[str, str]) -> dict[str, str]:
    """With a W&B key in the job's variables (a secret it names, or its config.env), name the
    run after the experiment and let a resumed attempt continue it instead of a new one."""
    if not environ.get(WANDB_KEY_ENV):
        return {}
    return {"WANDB_RUN_ID": f"baton-{experiment_id}", "WANDB_RESUME": "allow"}
