"""Limits, not crashes: out-of-memory retries, crash loops on resume, the time budget."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from arc_contract import ContractRun
from arc_fixtures import tiny_job_config

from ml.arc import solve, ttt, ttt_job
from ml.arc.budget import TaskClock, plan_task
from ml.arc.configs import LimitSettings
from ml.arc.solve import LEVELS, NONE, TaskPlan
from ml.arc.state import CRASHES_PER_LEVEL, PREDICTIONS_FILE, STATE_FILE, RunState
from worker.context import ENV_DEADLINE

TTT = "ml.arc.ttt_job"


@pytest.fixture
def config(tiny_tasks_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> dict:
    return tiny_job_config(tiny_tasks_dir, tiny_model_dir, tmp_path / "cache")


@pytest.fixture
def in_process(monkeypatch):
    """Run ``ml.arc.ttt_job`` in this process under a run's job contract."""
    previous = signal.getsignal(signal.SIGTERM)

    def run(contract: ContractRun) -> int:
        for name, value in contract.contract_vars().items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(contract.root)
        return ttt_job.main([])

    yield run
    signal.signal(signal.SIGTERM, previous)


def test_out_of_memory_retries_smaller_then_predicts_without_ttt(
    config: dict, tmp_path: Path, monkeypatch, in_process
) -> None:
    """a-mirror runs out of memory on its first try only, b-recolour on every training step
    (so it falls back to the base model), c-tile never; the run finishes and says so."""
    current: dict[str, str] = {}
    calls: Counter[str] = Counter()
    real_training_set, real_loss = solve.training_set, ttt.chunked_lm_loss

    def tracking_training_set(task, *args, **kwargs):
        current["task"] = task.task_id
        return real_training_set(task, *args, **kwargs)

    def loss_that_runs_out(model, batch, **kwargs):
        task = current["task"]
        calls[task] += 1
        if task == "b-recolour" or (task == "a-mirror" and calls[task] == 1):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.91 GiB")
        return real_loss(model, batch, **kwargs)

    monkeypatch.setattr(solve, "training_set", tracking_training_set)
    monkeypatch.setattr(ttt, "chunked_lm_loss", loss_that_runs_out)
    run = ContractRun(tmp_path / "run", TTT, config)
    assert in_process(run) == 0

    stats = run.result()["task_stats"]
    assert {task: s["ttt"] for task, s in stats.items()} == {
        "a-mirror": "reduced",
        "b-recolour": "none",
        "c-tile": "full",
    }
    assert [t["level"] for t in stats["a-mirror"]["oom"]] == ["full"]
    assert "out of memory" in stats["a-mirror"]["oom"][0]["error"]
    assert [t["level"] for t in stats["b-recolour"]["oom"]] == ["full", "reduced"]
    assert stats["c-tile"]["oom"] == []
    full_examples = len(
        real_training_set(
            *_task_and_builder("a-mirror", config),
            seed=_task_seed(config, "a-mirror"),
            max_seq_len=config["model"]["max_seq_len"],
        )
    )
    assert stats["a-mirror"]["examples"] == full_examples // 2  # fewer, shorter examples
    assert stats["a-mirror"]["steps"] >= 1
    assert stats["b-recolour"]["examples"] == stats["b-recolour"]["steps"] == 0
    submission = (run.output_dir / "submission.json").read_text()
    assert all(task in submission for task in stats)
    # Only tasks that trained an adapter export one.
    assert sorted(p.name for p in (run.output_dir / "adapters").iterdir()) == [
        "a-mirror",
        "c-tile",
    ]
    checkpoint = run.latest_checkpoint()
    assert sorted(p.name for p in checkpoint.iterdir()) == [PREDICTIONS_FILE, STATE_FILE]


def test_prediction_out_of_memory_halves_the_batch_and_keeps_the_adapter(
    config: dict, tmp_path: Path, monkeypatch, in_process
) -> None:
    """Inference of every task runs out of memory at any batch over 1 (the KV cache of long
    prompts): each task predicts at batch 6, 3, then 1, still at level ``full``, trained once."""
    real_predict = solve.predict_task
    batches: list[int] = []
    trainings: Counter[str] = Counter()
    real_training_set = solve.training_set

    def counting_training_set(task, *args, **kwargs):
        trainings[task.task_id] += 1
        return real_training_set(task, *args, **kwargs)

    def predict_that_runs_out(model, builder, task, settings, **kwargs):
        batches.append(settings.batch_size)
        if settings.batch_size > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.75 GiB")
        return real_predict(model, builder, task, settings, **kwargs)

    monkeypatch.setattr(solve, "training_set", counting_training_set)
    monkeypatch.setattr(solve, "predict_task", predict_that_runs_out)
    assert config["inference"]["batch_size"] == 6
    run = ContractRun(tmp_path / "run", TTT, config)
    assert in_process(run) == 0

    stats = run.result()["task_stats"]
    assert {s["ttt"] for s in stats.values()} == {"full"}
    assert all(s["inference_oom_batches"] == [6, 3] and s["oom"] == [] for s in stats.values())
    assert batches == [6, 3, 1] * len(stats)
    assert set(trainings.values()) == {1}  # the adapter was kept, not trained again
    assert all(task in (run.output_dir / "submission.json").read_text() for task in stats)


def _task_and_builder(task_id: str, config: dict):
    from transformers import AutoTokenizer

    from ml.arc.configs import TTTJobConfig
    from ml.arc.data import load_tasks
    from ml.arc.formatting import PromptBuilder

    cfg = TTTJobConfig.model_validate(config)
    (task,) = [t for t in load_tasks(cfg.data) if t.task_id == task_id]
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.name_or_path)
    return task, cfg.train, PromptBuilder(cfg.prompt, tokenizer)


def _task_seed(config: dict, task_id: str) -> int:
    from ml.common.seeding import derive_seed

    return derive_seed(config["seed"], task_id)


def test_a_task_that_keeps_killing_the_process_moves_down_a_level(tmp_path: Path) -> None:
    state = RunState(tmp_path, "hash")
    levels = []
    for _ in range(CRASHES_PER_LEVEL * len(LEVELS) + 1):
        levels.append(state.start("t"))  # each start after the first follows a death
    assert levels == [0, 0, 1, 1, 2, 2, 3]  # 3: every level failed; the job gives up on it
    restored = RunState.restore(tmp_path, tmp_path / "copy", "hash")
    assert restored.inflight == {"t": {"level": 3, "crashes": 0, "stopped": 0}}


def test_a_clean_stop_is_not_counted_as_a_crash(tmp_path: Path) -> None:
    state = RunState(tmp_path, "hash")
    assert state.start("t") == 0
    for _ in range(3):
        state.stopped("t")
        assert not state.crashed_before("t")
        assert state.start("t") == 0
    assert state.crashed_before("t")
    state.finish("t", [], {})
    assert state.inflight == {}


def test_a_task_that_killed_the_process_twice_restarts_with_less_ttt(
    config: dict, tmp_path: Path, in_process
) -> None:
    first = ContractRun(tmp_path / "first", TTT, config)
    state = RunState(first.checkpoint_dir / "step-000000000001", _config_hash(config))
    state.inflight = {"a-mirror": {"level": 0, "crashes": CRASHES_PER_LEVEL - 1, "stopped": 0}}
    state.save()
    resumed = ContractRun(tmp_path / "resumed", TTT, config, attempt=2, resume_dir=state.root)
    assert in_process(resumed) == 0
    result = resumed.result()
    assert result["restarted_tasks"] == ["a-mirror"]
    assert result["task_stats"]["a-mirror"]["ttt"] == "reduced"
    assert result["task_stats"]["b-recolour"]["ttt"] == "full"


def _config_hash(config: dict) -> str:
    from ml.arc.configs import TTTJobConfig
    from ml.common.envstamp import config_hash

    return config_hash(TTTJobConfig.model_validate(config).model_dump(mode="json"))


def clock(task_seconds: float, train_seconds: float, steps: int) -> TaskClock:
    measured = TaskClock()
    measured.record({"seconds": task_seconds, "train_seconds": train_seconds, "steps": steps})
    return measured


def test_no_deadline_and_no_budget_means_the_full_schedule() -> None:
    assert plan_task(LimitSettings(), clock(400, 300, 100), seconds_left=None) == TaskPlan()


def test_the_per_task_budget_caps_the_steps_and_the_training_time() -> None:
    limits = LimitSettings(task_seconds=432)
    plan = plan_task(limits, clock(400, 300, 100), seconds_left=None, now=1000.0)
    # 432 s less 100 s of prediction leaves 332 s of training at 3 s a step.
    assert plan == TaskPlan(level=0, max_steps=110, train_until=1332.0)
    before_any_task = plan_task(limits, TaskClock(), seconds_left=None, now=0.0)
    assert before_any_task == TaskPlan(level=0, max_steps=None, train_until=432.0)


def test_a_task_that_would_not_end_before_the_deadline_is_not_started() -> None:
    limits = LimitSettings(deadline_reserve_seconds=600)
    measured = clock(400, 300, 100)
    assert plan_task(limits, measured, seconds_left=600 + 399) is None
    assert plan_task(limits, TaskClock(), seconds_left=600) is None  # past the reserve
    plan = plan_task(limits, measured, seconds_left=600 + 401, now=0.0)
    assert plan is not None and plan.level == 0 and plan.train_until == pytest.approx(301)
    # The first task of a session has no estimate: it starts, bounded by the deadline.
    first = plan_task(limits, TaskClock(), seconds_left=650, now=0.0)
    assert first == TaskPlan(level=0, max_steps=None, train_until=50.0)


def test_only_time_to_predict_means_no_ttt() -> None:
    limits = LimitSettings(task_seconds=102)  # 2 s to train, but a step takes 3
    plan = plan_task(limits, clock(400, 300, 100), seconds_left=None)
    assert plan == TaskPlan(level=LEVELS.index(NONE))


def test_the_job_waits_for_the_stop_instead_of_starting_a_task_it_cannot_finish(
    config: dict, tmp_path: Path
) -> None:
    run = ContractRun(tmp_path / "run", TTT, config)
    run.extra_env[ENV_DEADLINE] = str(time.time() + 300)  # inside the 660 s reserve
    process = run.start()
    try:
        time.sleep(1)
        assert process.poll() is None  # waiting, not working and not gone
        run.stop_file.touch()
        assert process.wait(timeout=120) == 0
    finally:
        process.kill()
        process.wait()
    assert not run.messages("result") and not run.messages("progress")
    assert run.latest_checkpoint() is None  # nothing was started, so nothing changed


def test_a_full_arc_run_checkpoint_stays_far_under_50_mb(tmp_path: Path) -> None:
    """The worst case of ARC-AGI-1's evaluation set: 419 test outputs, every attempt a full
    30x30 grid, every task with an out-of-memory story in its stats; no rank enters."""
    state = RunState(tmp_path, "0" * 64)
    grid = [[9] * 30 for _ in range(30)]
    stats = {
        "examples": 250,
        "steps": 250,
        "total_steps": 250,
        "final_loss": 0.0123456789,
        "train_seconds": 412.345,
        "seconds": 431.987,
        "ttt": "reduced",
        "oom": [{"level": "full", "error": "CUDA out of memory. " + "x" * 180}],
    }
    for i in range(400):
        task_id = f"{i:08x}"
        state.predictions[task_id] = [{"attempt_1": grid, "attempt_2": grid}] * (1 + (i < 19))
        state.task_stats[task_id] = stats
        state.finished.append(task_id)
    state.save()
    size = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == [PREDICTIONS_FILE, STATE_FILE]
    assert size < 2.5 * 1024**2 < 50 * 1024**2
