"""The ml.video.train loop: AdamW, warmup + cosine, AMP on CUDA, early stopping, exact resume.

Exact resume rests on three things: the batch order is a pure function of (seed, epoch),
the only random numbers drawn during training come from torch's generator (dropout), whose
state is checkpointed, and validation, early stopping and checkpoints happen at fixed steps.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ml.common.checkpoints import require_files, torch_load, torch_save_atomic, write_json_atomic
from ml.common.device import choose_device
from ml.common.envstamp import config_hash, env_stamp, write_env_stamp
from ml.common.precision import device_precision
from ml.common.seeding import derive_seed, seed_everything
from ml.common.tracking import MetricsLogger
from ml.video.configs import TrainConfig
from ml.video.dataset import VideoDataset, load_dataset, write_dataset
from ml.video.evaluate import evaluate, predict, write_artifacts
from ml.video.job import METRICS_FILE, StopRequested, output_dir
from ml.video.losses import TargetNorm, task_losses
from ml.video.models import build_model
from ml.video.splits import ForecastSplit, make_splits
from ml.video.trajectories import CLASS_NAMES
from worker.context import JobContext

STATE_FILE = "training_state.pt"
ENV_FILE = "env.json"
GRAD_CLIP = 1.0


@dataclass
class Progress:
    """Where training stands; saved with every checkpoint."""

    step: int = 0
    best_score: float | None = None
    best_step: int = 0
    bad_evals: int = 0
    stopped_early: bool = False
    finished: bool = False


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """LR multiplier: linear warmup, then cosine decay to zero at ``total`` steps."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def epoch_order(size: int, seed: int, epoch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(derive_seed(seed, "epoch", epoch))
    return torch.randperm(size, generator=generator)


def obtain_dataset(config: TrainConfig, ctx: JobContext, out: Path) -> tuple[VideoDataset, int]:
    """The dataset, read from dataset_dir or generated into ``out``, and its seed."""
    if config.dataset_dir is not None:
        directory = Path(config.dataset_dir)
    else:
        directory = out / "dataset"
        if not write_dataset(config.inline_dataset, directory, should_stop=ctx.should_stop):
            raise StopRequested
    data, data_config = load_dataset(directory)
    if config.forecast_horizon >= data_config.num_frames:
        raise ValueError(
            f"forecast_horizon {config.forecast_horizon} leaves no frames to observe in"
            f" clips of {data_config.num_frames}"
        )
    return data, data_config.seed


class Trainer:
    def __init__(self, config: TrainConfig, ctx: JobContext):
        self.config = config
        self.ctx = ctx
        self.out = output_dir(ctx)
        self.out.mkdir(parents=True, exist_ok=True)
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        seed_everything(config.seed, deterministic=True)
        self.device = torch.device(choose_device(config.device))
        self.config_hash = config_hash(config.model_dump(mode="json"))
        write_env_stamp(
            self.out / ENV_FILE,
            env_stamp(config.model_dump(mode="json"), device=self.device.type),
        )

        data, data_seed = obtain_dataset(config, ctx, self.out)
        clip = data.videos.shape[1]
        # Every branch trained on one dataset is tested on the same samples: the split
        # follows the dataset's seed, not the training seed.
        self.splits = make_splits(
            data,
            observed=clip - config.forecast_horizon,
            horizon=config.forecast_horizon,
            val_fraction=config.val_fraction,
            test_fraction=config.test_fraction,
            seed=data_seed,
        )
        self.norm = TargetNorm.fit(self.splits["train"].future)

        self.model = build_model(
            config.model, len(CLASS_NAMES), config.forecast_horizon, clip - config.forecast_horizon
        )
        self.loss_weights = {
            "forecast": config.forecast_loss_weight,
            "track": config.track_loss_weight,
        }
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(config.warmup_steps, config.max_steps)
        )
        # bf16 where the GPU has it natively, fp16 below compute capability 8.0 (a T4 would
        # emulate bf16), fp32 on CPU and MPS: the same decision as ml.arc.
        precision = device_precision(self.device)
        self.use_amp = config.amp and precision.autocast
        self.amp_dtype = precision.dtype
        # Loss scaling is only needed for float16; bfloat16 has float32's range.
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.use_amp and precision.grad_scaler
        )
        self.progress = Progress()
        self.best_model: dict[str, torch.Tensor] | None = None
        self.checkpointed_step: int | None = None
        self._order: tuple[int, torch.Tensor] | None = None

    def autocast(self) -> AbstractContextManager[Any]:
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp)

    # -- checkpoints ---------------------------------------------------------------------

    def resume(self) -> None:
        """Restore the latest checkpoint if Baton gave one; fail fast if it is missing."""
        if self.ctx.resume_dir is None:
            return
        require_files(self.ctx.resume_dir, [STATE_FILE])
        state = torch_load(self.ctx.resume_dir / STATE_FILE, map_location="cpu")
        if state["config_hash"] != self.config_hash:
            raise ValueError(f"checkpoint {self.ctx.resume_dir} was written by a different config")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.norm = TargetNorm.from_state_dict(state["target_norm"])
        self.best_model = state["best_model"]
        self.progress = Progress(**state["progress"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.checkpointed_step = self.progress.step

    def save_checkpoint(self) -> None:
        if self.checkpointed_step == self.progress.step:
            return
        state = {
            "config_hash": self.config_hash,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "target_norm": self.norm.state_dict(),
            "best_model": self.best_model,
            "progress": asdict(self.progress),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
        }
        with tempfile.TemporaryDirectory(prefix="video-ckpt-") as scratch:
            torch_save_atomic(state, Path(scratch) / STATE_FILE)
            self.ctx.checkpoint(scratch, self.progress.step)
        self.checkpointed_step = self.progress.step

    # -- training ------------------------------------------------------------------------

    def _batch_rows(self, step: int) -> torch.Tensor:
        train = self.splits["train"]
        per_epoch = max(1, len(train) // self.config.batch_size)
        epoch, position = divmod(step, per_epoch)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(len(train), self.config.seed, epoch))
        size = min(self.config.batch_size, len(train))
        return self._order[1][position * size : (position + 1) * size]

    def _train_step(self) -> dict[str, float]:
        train = self.splits["train"]
        rows = self._batch_rows(self.progress.step)
        video = train.videos(rows, self.device)
        targets = train.targets(rows, self.norm, self.device)
        self.model.train()
        with self.autocast():
            outputs = self.model(video)
        losses = task_losses(outputs, targets, self.loss_weights)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["loss"]).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.progress.step += 1
        return {name: value.item() for name, value in losses.items()}

    def _evaluate(
        self, split: ForecastSplit, equations: bool = False
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        outputs = predict(self.model, split, 2 * self.config.batch_size, self.device, self.autocast)
        return evaluate(outputs, split, self.norm, self.loss_weights, equations)

    def _validate(self) -> dict[str, float]:
        metrics, _ = self._evaluate(self.splits["val"])
        p = self.progress
        if p.best_score is None or metrics["loss"] < p.best_score:
            p.best_score, p.best_step, p.bad_evals = metrics["loss"], p.step, 0
            self.best_model = {
                k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
            }
        else:
            p.bad_evals += 1
            patience = self.config.early_stopping_patience
            if patience is not None and p.bad_evals >= patience:
                p.stopped_early = p.finished = True
        return {f"val_{k}": v for k, v in metrics.items() if isinstance(v, float)}

    def train(self, tracker: MetricsLogger) -> None:
        cfg, p = self.config, self.progress
        while not p.finished:
            if self.ctx.should_stop():
                self.save_checkpoint()
                raise StopRequested
            scalars = self._train_step()
            scalars["lr"] = float(self.scheduler.get_last_lr()[0])
            validated = p.step % cfg.eval_every == 0 or p.step >= cfg.max_steps
            if validated:
                scalars.update(self._validate())
            p.finished = p.finished or p.step >= cfg.max_steps
            if validated or p.step % cfg.log_every == 0:
                tracker.log(p.step, **scalars)
                self.ctx.progress(p.step, cfg.max_steps, **scalars)
            if p.finished or p.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()

    # -- final evaluation ----------------------------------------------------------------

    def test(self) -> dict[str, Any]:
        """Evaluate the best model on the test split, write artifacts, return the result."""
        if self.best_model is not None:
            self.model.load_state_dict(self.best_model)
        metrics, per_sample = self._evaluate(self.splits["test"], equations=True)
        artifacts = write_artifacts(self.out, self.splits["test"], metrics, per_sample)
        result: dict[str, Any] = {
            "experiment_id": self.ctx.experiment_id,
            "backbone": self.config.model.backbone,
            "heads": list(self.config.model.heads),
            "device": self.device.type,
            "config_hash": self.config_hash,
            "steps": self.progress.step,
            "best_step": self.progress.best_step,
            "stopped_early": self.progress.stopped_early,
            "best_val_loss": self.progress.best_score,
            "forecast_horizon": self.config.forecast_horizon,
            "num_train": len(self.splits["train"]),
            "num_test": len(self.splits["test"]),
            **{f"test_{k}": v for k, v in metrics.items()},
            "artifacts": [p.name for p in artifacts],
        }
        write_json_atomic(self.out / METRICS_FILE, result)
        return result


def run_training(config: TrainConfig, ctx: JobContext) -> dict[str, Any]:
    """Train (resuming if Baton gave a checkpoint), test, and report the result to ``ctx``."""
    trainer = Trainer(config, ctx)
    trainer.resume()
    with MetricsLogger(
        trainer.out, run_name=ctx.experiment_id, config=config.model_dump(mode="json")
    ) as tracker:
        trainer.train(tracker)
        result = trainer.test()
        tracker.log(
            trainer.progress.step,
            **{k: v for k, v in result.items() if k.startswith("test_") and isinstance(v, float)},
        )
    ctx.result(**result)
    return result
