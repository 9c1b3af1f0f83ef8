"""One run on several GPUs (Kaggle's T4x2): one ``ml.arc.ttt_job`` process per GPU.

The job started by the agent becomes a coordinator that loads no model. It splits the tasks
not yet finished round-robin over the GPUs (:func:`partition`), and starts one ordinary
job per GPU under its own job contract: ``CUDA_VISIBLE_DEVICES`` names its GPU, its config
lists its tasks, its resume state holds its share of the run's state, and its checkpoints,
progress channel and stop file live in the coordinator's scratch directory. Each child
checkpoint is merged back into the run's one state (:func:`merge_shard`) and handed to Baton
as the run's checkpoint, so a resumed run, on one GPU or on two, sees one state. A stop
request is passed on to every child; when all have finished, the coordinator writes the
submission as a single-GPU run would. Task results do not depend on which process ran them
(every task's seeds derive from its id), so the submission is the one a single GPU makes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml.arc.configs import LimitSettings
from ml.arc.state import PREDICTIONS_FILE, STATE_FILE, RunState
from ml.common.checkpoints import read_json
from ml.common.envstamp import config_hash
from worker.context import (
    ENV_ATTEMPT,
    ENV_CHECKPOINT_DIR,
    ENV_CONFIG,
    ENV_DEADLINE,
    ENV_EXPERIMENT_ID,
    ENV_OUTPUT_DIR,
    ENV_PROGRESS_FILE,
    ENV_RESUME_DIR,
    ENV_RESUME_STEP,
    ENV_STOP_FILE,
    STAGED_PREFIX,
)

if TYPE_CHECKING:
    from ml.arc.data import ArcTask
    from ml.arc.ttt_job import TTTJob

POLL_SECONDS = 0.5
ENTRYPOINT = "ml.arc.ttt_job"


def gpu_shards(device: str, limits: LimitSettings) -> list[dict[str, str]]:
    """The environment of each shard: one per visible CUDA GPU, or [] to run in-process."""
    if device != "cuda" or not limits.shard_gpus:
        return []
    import torch

    count = torch.cuda.device_count()
    if count < 2:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(i) for i in range(count)]
    return [{"CUDA_VISIBLE_DEVICES": gpu} for gpu in ids[:count]]


def partition(task_ids: list[str], shards: int) -> list[list[str]]:
    """Round-robin in run order: deterministic, and each GPU gets short and long tasks alike."""
    return [task_ids[i::shards] for i in range(shards)]


def shard_state(state: RunState, task_ids: list[str], root: Path, shard_hash: str) -> RunState:
    """The part of ``state`` about ``task_ids``, as a child's resume state under ``root``."""
    share = RunState(
        root,
        shard_hash,
        finished=[t for t in state.finished if t in task_ids],
        predictions={t: state.predictions[t] for t in task_ids if t in state.predictions},
        task_stats={t: state.task_stats[t] for t in task_ids if t in state.task_stats},
        inflight={t: dict(state.inflight[t]) for t in task_ids if t in state.inflight},
    )
    root.mkdir(parents=True)
    share.save()
    return share


def merge_shard(state: RunState, task_ids: list[str], checkpoint: Path) -> bool:
    """Take a child's checkpoint of ``task_ids`` into ``state``; True if anything changed."""
    raw = read_json(checkpoint / STATE_FILE)
    predictions = read_json(checkpoint / PREDICTIONS_FILE)
    changed = False
    for task_id in raw["finished"]:
        if task_id not in state.predictions:
            state.finish(task_id, predictions[task_id], raw["task_stats"][task_id])
            changed = True
    inflight = {t: e for t, e in raw["inflight"].items() if t not in state.predictions}
    ours = {t: e for t, e in state.inflight.items() if t in task_ids}
    if inflight != ours:
        for task_id in ours:
            del state.inflight[task_id]
        state.inflight.update(inflight)
        changed = True
    if changed:
        state.save()
    return changed


@dataclass
class Shard:
    index: int
    task_ids: list[str]
    root: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def stop_file(self) -> Path:
        return self.root / "stop"

    def latest_checkpoint(self) -> Path | None:
        staged = sorted(self.checkpoints.glob(f"{STAGED_PREFIX}*"))
        for old in staged[:-1]:  # merged already: the child's disk need not fill up
            shutil.rmtree(old, ignore_errors=True)
        return staged[-1] if staged else None

    def result(self) -> dict[str, Any]:
        progress = self.root / "progress.jsonl"
        lines = progress.read_text().splitlines() if progress.exists() else []
        results = [json.loads(line) for line in lines if '"type":"result"' in line]
        return results[-1]["values"] if results else {}


def run_shards(
    job: TTTJob, tasks: list[ArcTask], envs: list[dict[str, str]], work: Path
) -> int | None:
    """Run ``tasks`` across ``envs``; None when all finished, else the exit code to return."""
    pending = [task.task_id for task in tasks if task.task_id not in job.state.predictions]
    shards = [
        Shard(i, ids, work / f"shard-{i}") for i, ids in enumerate(partition(pending, len(envs)))
    ]
    shards = [shard for shard in shards if shard.task_ids]
    for shard in shards:
        shard.process = _start(job, shard, envs[shard.index])
    stopping = False
    while any(shard.process and shard.process.poll() is None for shard in shards):
        if job.ctx.should_stop() and not stopping:
            stopping = True
            for shard in shards:
                shard.stop_file.touch()
        _merge(job, shards, len(tasks))
        time.sleep(POLL_SECONDS)
    _merge(job, shards, len(tasks))
    for shard in shards:
        job.restarted.extend(shard.result().get("restarted_tasks", []))
    failed = [s.process.returncode for s in shards if s.process and s.process.returncode]
    if failed:
        return failed[0]
    if stopping or len(job.state.predictions) < len(tasks):
        return 0
    return None


def _start(job: TTTJob, shard: Shard, env: dict[str, str]) -> subprocess.Popen[bytes]:
    config = json.loads(json.dumps(job.config_json))
    config["data"]["task_ids"] = shard.task_ids
    config["limits"]["shard_gpus"] = False
    config["run_name"] = f"{job.cfg.run_name}-shard{shard.index}"
    shard.root.mkdir(parents=True)
    (shard.root / "config.json").write_text(json.dumps(config))
    resume = shard.root / "resume"
    shard_state(job.state, shard.task_ids, resume, config_hash(config))
    output = job.output_dir / f"shard-{shard.index}"
    contract = {
        ENV_EXPERIMENT_ID: job.ctx.experiment_id,
        ENV_ATTEMPT: str(job.ctx.attempt),
        ENV_CONFIG: str(shard.root / "config.json"),
        ENV_CHECKPOINT_DIR: str(shard.checkpoints),
        ENV_PROGRESS_FILE: str(shard.root / "progress.jsonl"),
        ENV_STOP_FILE: str(shard.stop_file),
        ENV_OUTPUT_DIR: str(output.resolve()),
        ENV_RESUME_DIR: str(resume),
        ENV_RESUME_STEP: "0",
    }
    if job.ctx.deadline is not None:
        contract[ENV_DEADLINE] = str(job.ctx.deadline)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    return subprocess.Popen(
        [sys.executable, "-m", ENTRYPOINT], env={**inherited, **contract, **env}
    )


def _merge(job: TTTJob, shards: list[Shard], total: int) -> None:
    changed = False
    for shard in shards:
        latest = shard.latest_checkpoint()
        if latest is not None:
            changed = merge_shard(job.state, shard.task_ids, latest) or changed
    if changed:
        job.checkpoint()
        job.ctx.progress(len(job.state.finished), total)
