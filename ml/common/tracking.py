"""Scalar metrics to TensorBoard, and to Weights & Biases when ``WANDB_API_KEY`` is set."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class MetricsLogger:
    """Fan scalar metrics out to the configured sinks; use as a context manager."""

    def __init__(
        self,
        log_dir: str | Path,
        *,
        run_name: str,
        config: Mapping[str, Any],
        tensorboard: bool = True,
        wandb_project: str = "baton",
    ) -> None:
        self.log_dir = Path(log_dir)
        self._tensorboard = None
        self._wandb_run = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(log_dir=str(self.log_dir / "tensorboard" / run_name))
        if os.environ.get("WANDB_API_KEY"):
            self._wandb_run = _start_wandb(self.log_dir, run_name, config, wandb_project)

    @property
    def wandb_dir(self) -> Path | None:
        return None if self._wandb_run is None else Path(self._wandb_run.dir)

    def log(self, step: int, **metrics: float) -> None:
        if self._tensorboard is not None:
            for name, value in metrics.items():
                self._tensorboard.add_scalar(name, value, step)
        if self._wandb_run is not None:
            self._wandb_run.log(dict(metrics), step=step)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        if self._wandb_run is not None:
            self._wandb_run.finish()
            self._wandb_run = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _start_wandb(log_dir: Path, run_name: str, config: Mapping[str, Any], project: str) -> Any:
    try:
        import wandb
    except ImportError:
        # A key in a notebook's secrets should not break a run that never asked for W&B.
        log.warning("WANDB_API_KEY is set but wandb is not installed; not logging to W&B")
        return None
    log_dir.mkdir(parents=True, exist_ok=True)
    return wandb.init(
        project=os.environ.get("WANDB_PROJECT", project),
        name=run_name,
        config=dict(config),
        dir=str(log_dir),
        reinit="finish_previous",
    )
