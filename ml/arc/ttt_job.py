"""Job kind ``ml.arc.ttt``: per task, train a LoRA adapter on its demonstrations, predict
two attempts for each test input, checkpoint; at the end write ``submission.json``.

Run it as ``python -m ml.arc.ttt_job`` (under a Baton worker, or standalone in ./baton-run).
A resumed run skips finished tasks and continues the in-flight task from its last saved
step. Exit codes: 0 done or stopped on request, 2 unusable config or checkpoint.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ml.arc.configs import TTT_KIND, TTTJobConfig
from ml.arc.data import ArcTask, load_tasks
from ml.arc.formatting import PromptBuilder
from ml.arc.inference import as_attempts, predict_task
from ml.arc.modeling import (
    GPURequiredError,
    attach_lora,
    check_quantization,
    detach_lora,
    load_model,
    save_adapter,
)
from ml.arc.scoring import complete_submission, score, write_submission
from ml.arc.state import PHASE_PREDICT, PHASE_TRAIN, RunState
from ml.arc.ttt import AdapterTrainer, training_set
from ml.common.checkpoints import CheckpointError
from ml.common.device import DeviceUnavailableError, choose_device
from ml.common.envstamp import config_hash, env_stamp, write_env_stamp
from ml.common.seeding import derive_seed, seed_everything
from ml.common.tracking import MetricsLogger
from worker.context import JobContext

log = logging.getLogger(TTT_KIND)


class TTTJob:
    def __init__(self, ctx: JobContext, config: TTTJobConfig) -> None:
        self.ctx, self.cfg = ctx, config
        self.device = choose_device(config.model.device)
        check_quantization(config.model, self.device)
        self.config_json = config.model_dump(mode="json")
        self.config_hash = config_hash(self.config_json)
        self.output_dir = ctx.output_dir or Path("baton-run") / "output"
        self.resumed: dict[str, Any] = {}

    def run(self) -> int:
        seed_everything(self.cfg.seed)
        with tempfile.TemporaryDirectory(prefix="arc-ttt-") as work:
            self.state = self._open_state(Path(work))
            self._write_env_stamp()
            tasks = load_tasks(self.cfg.data)
            self.model, tokenizer = load_model(self.cfg.model, self.device)
            self.builder = PromptBuilder(self.cfg.prompt, tokenizer)
            with MetricsLogger(
                self.output_dir,
                run_name=f"{self.cfg.run_name}-attempt{self.ctx.attempt}",
                config=self.config_json,
                tensorboard=self.cfg.tensorboard,
            ) as self.metrics:
                skipped = [task.task_id for task in tasks if task.task_id in self.state.predictions]
                for task in tasks:
                    if task.task_id in self.state.predictions:
                        continue
                    if self.ctx.should_stop() or not self._solve(task):
                        log.info("stop requested: checkpointed, exiting")
                        return 0
                    self._report_progress(tasks)
                self._finish(tasks, skipped)
        return 0

    def _open_state(self, work: Path) -> RunState:
        source = self.ctx.resume()
        if source is None:
            return RunState(work, self.config_hash)
        state = RunState.restore(source, work, self.config_hash)
        log.info("resuming from %s: %d tasks finished", source, len(state.finished))
        return state

    def _write_env_stamp(self) -> None:
        stamp = env_stamp(
            self.config_json,
            device=self.device,
            extra={
                "kind": TTT_KIND,
                "experiment_id": self.ctx.experiment_id,
                "attempt": self.ctx.attempt,
                "resumed_from_step": self.ctx.resume_step,
            },
        )
        write_env_stamp(self.output_dir / "run-records" / f"attempt-{self.ctx.attempt}.json", stamp)

    def _solve(self, task: ArcTask) -> bool:
        """Train and predict one task; False if a stop request interrupted it."""
        cfg, started = self.cfg, time.monotonic()
        task_seed = derive_seed(cfg.seed, task.task_id)
        saved = self.state.load_inflight(task.task_id, map_location=self.device)
        phase = self.state.inflight_phase if saved is not None else PHASE_TRAIN
        stats: dict[str, Any] = {"examples": 0, "steps": 0}
        examples = []
        if cfg.train.enabled:
            examples = training_set(
                task, cfg.train, self.builder, seed=task_seed, max_seq_len=cfg.model.max_seq_len
            )
        # A task with a single demonstration has no leave-one-out examples: no adapter.
        predictor = attach_lora(self.model, cfg.lora, task_seed) if examples else self.model
        try:
            if examples:
                trainer = AdapterTrainer(
                    predictor,
                    examples,
                    cfg.train,
                    seed=task_seed,
                    device=self.device,
                    pad_id=self.builder.tokenizer.pad_token_id,
                )
                if saved is not None:
                    trainer.load_state_dict(saved)
                    self.resumed = {"resumed_task": task.task_id, "resumed_at_step": trainer.step}
                if phase == PHASE_TRAIN and not self._train(task, trainer):
                    return False
                stats.update(
                    examples=len(examples),
                    steps=trainer.step,
                    total_steps=trainer.total_steps,
                    final_loss=trainer.losses[-1] if trainer.losses else None,
                    stopped_early=trainer.stopped_early,
                )
            guesses = predict_task(
                predictor,
                self.builder,
                task,
                cfg.inference,
                seed=derive_seed(cfg.seed, task.task_id, "inference"),
                device=self.device,
                max_seq_len=cfg.model.max_seq_len,
                should_stop=self.ctx.should_stop,
            )
            if guesses is None:
                if examples:
                    self._checkpoint_inflight(task, trainer, PHASE_PREDICT)
                return False
            if examples:
                self._keep_adapter(task, predictor)
        finally:
            if examples:
                self.model = detach_lora(predictor)
        stats["seconds"] = round(time.monotonic() - started, 3)
        self.state.finish(task.task_id, as_attempts(guesses), stats)
        self._checkpoint()
        if task.test_outputs is not None:
            solved = score([task], {task.task_id: self.state.predictions[task.task_id]})
            self.metrics.log(len(self.state.finished), task_solved_outputs=solved.solved_outputs)
        return True

    def _train(self, task: ArcTask, trainer: AdapterTrainer) -> bool:
        outcome = trainer.run(
            should_stop=self.ctx.should_stop,
            on_checkpoint=lambda: self._checkpoint_inflight(task, trainer, PHASE_TRAIN),
            on_step=lambda step, loss: self.metrics.log(step, **{f"loss/{task.task_id}": loss}),
        )
        if outcome.interrupted:
            self._checkpoint_inflight(task, trainer, PHASE_TRAIN)
            return False
        if self.cfg.train.checkpoint_every_steps:
            # Training is the expensive part: do not redo it if prediction is interrupted.
            self._checkpoint_inflight(task, trainer, PHASE_PREDICT)
        return True

    def _keep_adapter(self, task: ArcTask, peft_model: Any) -> None:
        shutil.rmtree(self.state.last_adapter_dir, ignore_errors=True)
        save_adapter(peft_model, self.state.last_adapter_dir)
        if self.cfg.save_adapters:
            target = self.output_dir / "adapters" / task.task_id
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(self.state.last_adapter_dir, target)

    def _checkpoint_inflight(self, task: ArcTask, trainer: AdapterTrainer, phase: str) -> None:
        self.state.save_inflight(task.task_id, phase, trainer.state_dict())
        self._checkpoint()

    def _checkpoint(self) -> None:
        step = self.state.next_step()
        self.state.save()
        self.ctx.checkpoint(self.state.root, step)

    def _report_progress(self, tasks: list[ArcTask]) -> None:
        stats = self.state.task_stats[self.state.finished[-1]]
        metrics = {"task_seconds": float(stats["seconds"])}
        if stats.get("final_loss") is not None:
            metrics["final_loss"] = float(stats["final_loss"])
        self.ctx.progress(len(self.state.finished), len(tasks), **metrics)

    def _finish(self, tasks: list[ArcTask], skipped: list[str]) -> None:
        submission = complete_submission(tasks, self.state.predictions)
        path = write_submission(self.output_dir / "submission.json", submission)
        values: dict[str, Any] = {
            "submission": str(path),
            "tasks": len(tasks),
            "skipped_tasks": skipped,
            "task_stats": self.state.task_stats,
            **self.resumed,
        }
        if all(task.test_outputs is not None for task in tasks):
            report = score(tasks, submission)
            (self.output_dir / "scores.json").write_text(json.dumps(report.to_json(), indent=1))
            (self.output_dir / "report.md").write_text(report.markdown())
            values.update(
                score=report.score,
                solved_outputs=report.solved_outputs,
                total_outputs=report.total_outputs,
            )
            self.metrics.log(len(tasks), score=report.score)
        self.ctx.result(**values)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ctx = JobContext.from_env()
    try:
        config = TTTJobConfig.model_validate(ctx.config)
        return TTTJob(ctx, config).run()
    except ValidationError as exc:
        print(f"error: invalid {TTT_KIND} config: {exc}", file=sys.stderr)
    except (CheckpointError, GPURequiredError, DeviceUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
