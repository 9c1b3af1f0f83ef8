"""Job kind ``ml.arc.ttt``: per task, train a LoRA adapter on its demonstrations, predict
two attempts for each test input, checkpoint; at the end write ``submission.json``.

Run it as ``python -m ml.arc.ttt_job`` (under a Baton worker, or standalone in ./baton-run).
A resumed run skips finished tasks and restarts an interrupted one from its beginning (the
checkpoint is kept small: no adapter, no optimizer; see ml/arc/state.py). A task that runs
out of GPU memory is retried with less TTT (ml/arc/solve.py); one that would not end before
the session deadline waits for the next session (ml/arc/budget.py).
Exit codes: 0 done or stopped on request, 2 unusable config or checkpoint.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ml.arc.budget import TaskClock, plan_task
from ml.arc.cli import job_context
from ml.arc.configs import TTT_KIND, TTTJobConfig
from ml.arc.data import ArcTask, load_tasks
from ml.arc.formatting import PromptBuilder
from ml.arc.inference import as_attempts
from ml.arc.modeling import GPURequiredError, check_quantization, load_model, save_adapter
from ml.arc.scoring import complete_submission, score, write_submission
from ml.arc.shards import gpu_shards, run_shards
from ml.arc.solve import FAILED, LEVELS, TaskHooks, TaskOutcome, solve_task
from ml.arc.state import RunState
from ml.arc.weights import ModelUnavailableError
from ml.common.checkpoints import CheckpointError
from ml.common.device import DeviceUnavailableError, choose_device
from ml.common.envstamp import config_hash, env_stamp, write_env_stamp
from ml.common.precision import device_precision, enable_expandable_segments, release_cached_memory
from ml.common.seeding import seed_everything
from ml.common.tracking import MetricsLogger
from worker.context import JobContext

log = logging.getLogger(TTT_KIND)
WAIT_POLL_SECONDS = 1.0


class TTTJob:
    def __init__(
        self,
        ctx: JobContext,
        config: TTTJobConfig,
        shard_envs: list[dict[str, str]] | None = None,
    ) -> None:
        """``shard_envs``: one environment per process to split the tasks over (default: one
        per visible GPU when there are several, see ml/arc/shards.py)."""
        self.ctx, self.cfg = ctx, config
        self.device = choose_device(config.model.device)
        check_quantization(config.model, self.device)
        self.shard_envs = (
            gpu_shards(self.device, config.limits) if shard_envs is None else shard_envs
        )
        self.config_json = config.model_dump(mode="json")
        self.config_hash = config_hash(self.config_json)
        # A coordinator of GPU shards loads no model: asking CUDA for the capability would
        # start a CUDA context (hundreds of MB) on the first GPU for nothing.
        self.precision = None if len(self.shard_envs) > 1 else device_precision(self.device)
        self.output_dir = ctx.output_dir or Path("baton-run") / "output"
        self.restarted: list[str] = []
        """Tasks a previous attempt died during, restarted here from their beginning."""
        self.clock = TaskClock()

    def run(self) -> int:
        seed_everything(self.cfg.seed)
        with (
            tempfile.TemporaryDirectory(prefix="arc-ttt-") as work,
            MetricsLogger(
                self.output_dir,
                run_name=f"{self.cfg.run_name}-attempt{self.ctx.attempt}",
                config=self.config_json,
                tensorboard=self.cfg.tensorboard,
            ) as self.metrics,
        ):
            self.state = self._open_state(Path(work) / "state")
            self._write_env_stamp()
            tasks = load_tasks(self.cfg.data)
            skipped = [task.task_id for task in tasks if task.task_id in self.state.predictions]
            if len(self.shard_envs) > 1:
                stopped = run_shards(self, tasks, self.shard_envs, Path(work))
            else:
                stopped = self._run_tasks(tasks)
            if stopped is not None:
                return stopped
            self._finish(tasks, skipped)
        return 0

    def _run_tasks(self, tasks: list[ArcTask]) -> int | None:
        """Solve the unfinished tasks here; None when all are done, 0 when stopped."""
        self.model, tokenizer = load_model(self.cfg.model, self.device)
        self.builder = PromptBuilder(self.cfg.prompt, tokenizer)
        for task in tasks:
            if task.task_id in self.state.predictions:
                continue
            if self.ctx.should_stop() or not self._solve(task):
                log.info("stop requested: checkpointed, exiting")
                return 0
            self._report_progress(tasks)
        return None

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
                "precision": (
                    self.precision.describe()
                    if self.precision
                    else f"one process per GPU ({len(self.shard_envs)})"
                ),
            },
        )
        write_env_stamp(self.output_dir / "run-records" / f"attempt-{self.ctx.attempt}.json", stamp)

    def _solve(self, task: ArcTask) -> bool:
        """Train and predict one task; False if it was not finished (stop or deadline)."""
        plan = plan_task(self.cfg.limits, self.clock, seconds_left=self.ctx.seconds_left())
        if plan is None:
            log.info("task %s would not end before the session deadline: waiting", task.task_id)
            self._wait_for_stop()
            return False
        if self.state.crashed_before(task.task_id):
            self.restarted.append(task.task_id)
        level = self.state.start(task.task_id)
        if level >= len(LEVELS):
            # It killed the process at every level: give up on it rather than loop.
            return self._finished(
                task, TaskOutcome([[] for _ in task.test_inputs], {"ttt": FAILED})
            )
        plan = replace(plan, level=max(plan.level, level))
        self.checkpoint()  # the task is in flight: a death during it is counted on resume
        outcome = solve_task(
            self.model,
            self.builder,
            task,
            self.cfg,
            device=self.device,
            plan=plan,
            precision=self.precision,
            hooks=TaskHooks(
                should_stop=self.ctx.should_stop,
                on_step=lambda step, loss: self.metrics.log(step, **{f"loss/{task.task_id}": loss}),
                keep_adapter=(
                    (lambda adapter: self._export_adapter(task, adapter))
                    if self.cfg.save_adapters
                    else None
                ),
            ),
        )
        release_cached_memory()
        if outcome.guesses is None:
            self.state.stopped(task.task_id)
            self.checkpoint()
            return False
        self.clock.record(outcome.stats)
        return self._finished(task, outcome)

    def _finished(self, task: ArcTask, outcome: TaskOutcome) -> bool:
        assert outcome.guesses is not None
        self.state.finish(task.task_id, as_attempts(outcome.guesses), outcome.stats)
        self.checkpoint()
        if task.test_outputs is not None:
            solved = score([task], {task.task_id: self.state.predictions[task.task_id]})
            self.metrics.log(len(self.state.finished), task_solved_outputs=solved.solved_outputs)
        return True

    def _wait_for_stop(self) -> None:
        """Idle until the agent asks for the stop (or, standalone, the deadline passes)."""
        while not self.ctx.should_stop():
            left = self.ctx.seconds_left()
            if left is not None and left <= 0:
                return
            time.sleep(WAIT_POLL_SECONDS)

    def _export_adapter(self, task: ArcTask, peft_model: Any) -> None:
        """The task's adapter goes to the outputs, never into the (small) resume state."""
        target = self.output_dir / "adapters" / task.task_id
        shutil.rmtree(target, ignore_errors=True)
        save_adapter(peft_model, target)

    def checkpoint(self) -> None:
        step = self.state.next_step()
        self.state.save()
        self.ctx.checkpoint(self.state.root, step)

    def _report_progress(self, tasks: list[ArcTask]) -> None:
        stats = self.state.task_stats[self.state.finished[-1]]
        metrics = {"task_seconds": float(stats.get("seconds", 0.0))}
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
            "restarted_tasks": self.restarted,
            "task_stats": self.state.task_stats,
        }
        if all(task.test_outputs is not None for task in tasks):
            # Scored before the fallback fill, so that "no parsable grid" shows as missing.
            report = score(tasks, self.state.predictions)
            (self.output_dir / "scores.json").write_text(json.dumps(report.to_json(), indent=1))
            (self.output_dir / "report.md").write_text(report.markdown())
            values.update(
                score=report.score,
                solved_outputs=report.solved_outputs,
                total_outputs=report.total_outputs,
            )
            self.metrics.log(len(tasks), score=report.score)
        self.ctx.result(**values)


def main(argv: list[str] | None = None) -> int:
    enable_expandable_segments()  # before anything touches CUDA
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ctx = job_context(
        "python -m ml.arc.ttt_job",
        "Test-time train one LoRA adapter per ARC task and predict.",
        argv,
    )
    try:
        config = TTTJobConfig.model_validate(ctx.config)
        return TTTJob(ctx, config).run()
    except ValidationError as exc:
        print(f"error: invalid {TTT_KIND} config: {exc}", file=sys.stderr)
    except (
        CheckpointError,
        GPURequiredError,
        DeviceUnavailableError,
        ModelUnavailableError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
