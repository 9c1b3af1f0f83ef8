"""The job kinds under the worker's job contract, run as the agent runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from arc_contract import REPO_ROOT, ContractRun
from arc_fixtures import tiny_job_config, tiny_tasks

from ml.arc import eval_job, ttt_job
from ml.arc.state import PREDICTIONS_FILE, STATE_FILE

TTT = "ml.arc.ttt_job"
CHECKPOINT_BOUND_BYTES = 16 * 1024
"""Three tiny tasks' predictions and stats; ml/arc/state.py works out the 400-task size."""


@pytest.fixture
def config(tiny_tasks_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> dict:
    return tiny_job_config(tiny_tasks_dir, tiny_model_dir, tmp_path / "cache")


@pytest.fixture
def restore_sigterm():
    # JobContext.from_env installs a SIGTERM handler; in-process runs must not leak it.
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def state_of(checkpoint: Path) -> dict:
    return json.loads((checkpoint / STATE_FILE).read_text())


def test_ttt_job_runs_standalone_with_run_records(config: dict, tmp_path: Path) -> None:
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({**config, "tensorboard": True}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        OMP_NUM_THREADS="1",
        WANDB_API_KEY="test-key",
        WANDB_MODE="offline",
    )
    done = subprocess.run(
        [sys.executable, "-m", TTT, "--config", str(config_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "baton-run" / "output"
    submission = json.loads((out / "submission.json").read_text())
    assert list(submission) == ["a-mirror", "b-recolour", "c-tile"]
    assert [len(v) for v in submission.values()] == [1, 2, 1]
    assert all(set(e) == {"attempt_1", "attempt_2"} for v in submission.values() for e in v)
    scores = json.loads((out / "scores.json").read_text())
    assert scores["total_outputs"] == 4
    stamp = json.loads((out / "run-records" / "attempt-1.json").read_text())
    assert stamp["device"] == "cpu" and stamp["kind"] == "ml.arc.ttt"
    assert stamp["packages"]["torch"].startswith("2.") and len(stamp["config_hash"]) == 64
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert list((out / "wandb").glob("offline-run-*"))
    assert sorted(p.name for p in (out / "adapters").iterdir()) == list(submission)
    staged = sorted((tmp_path / "baton-run" / "checkpoints").glob("step-*"))
    assert state_of(staged[-1])["finished"] == list(submission)
    assert state_of(staged[-1])["inflight"] == {}
    # The resume state is two small JSON files: the adapters went to the outputs only.
    for checkpoint in staged:
        assert sorted(p.name for p in checkpoint.rglob("*")) == [PREDICTIONS_FILE, STATE_FILE]
    assert sum(p.stat().st_size for p in staged[-1].iterdir()) < CHECKPOINT_BOUND_BYTES


def test_killed_ttt_job_resumes_without_redoing_work(config: dict, tmp_path: Path) -> None:
    straight = ContractRun(tmp_path / "straight", TTT, config)
    done = straight.run()
    assert done.returncode == 0, done.stderr[-3000:]

    killed = ContractRun(tmp_path / "killed", TTT, config)
    process = killed.start()
    try:
        # Kill -9 once a task is finished and the next one is in flight.
        killed.wait_for(
            process, lambda c: state_of(c)["finished"] and state_of(c)["inflight"], timeout=180
        )
        process.kill()
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not killed.messages("result")

    checkpoint = killed.latest_checkpoint()
    state = state_of(checkpoint)
    assert 1 <= len(state["finished"]) < 3
    resumed = ContractRun(tmp_path / "resumed", TTT, config, attempt=2, resume_dir=checkpoint)
    done = resumed.run()
    assert done.returncode == 0, done.stderr[-3000:]

    result, expected = resumed.result(), straight.result()
    assert result["skipped_tasks"] == state["finished"]
    for task_id in state["finished"]:  # carried over, not recomputed (timings would differ)
        assert result["task_stats"][task_id] == state["task_stats"][task_id]
    # The task in flight restarts from scratch at full TTT (one death may be a lost worker).
    assert result["restarted_tasks"] == list(state["inflight"])
    for task_id, stats in expected["task_stats"].items():
        assert result["task_stats"][task_id]["final_loss"] == stats["final_loss"]
    assert (resumed.output_dir / "submission.json").read_text() == (
        straight.output_dir / "submission.json"
    ).read_text()
    for task_id in expected["task_stats"]:
        assert result["task_stats"][task_id]["ttt"] == "full"
        attempt = killed if task_id in state["finished"] else resumed
        adapter = f"adapters/{task_id}/adapter_model.safetensors"
        assert (attempt.output_dir / adapter).read_bytes() == (
            straight.output_dir / adapter
        ).read_bytes()


def test_sigterm_checkpoints_and_exits_cleanly(config: dict, tmp_path: Path) -> None:
    run = ContractRun(tmp_path / "run", TTT, config)
    process = run.start()
    try:
        first = run.wait_for(process, lambda c: True, timeout=180)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        process.wait()
    assert not run.messages("result")
    last = run.latest_checkpoint()
    assert last.name > first.name  # a fresh checkpoint was handed over on the way out
    state = state_of(last)
    in_flight = list(state["inflight"].values())
    # A stopped task is marked so: its restart is not counted as a crash.
    assert in_flight == [{"level": 0, "crashes": 0, "stopped": 1}] or len(state["finished"]) == 3


def fake_checkpoint(root: Path, config: dict, **state_overrides) -> Path:
    from ml.arc.configs import TTTJobConfig
    from ml.common.envstamp import config_hash

    checkpoint = root / "step-000000000004"
    checkpoint.mkdir(parents=True)
    state = {
        "version": 2,
        "config_hash": config_hash(TTTJobConfig.model_validate(config).model_dump(mode="json")),
        "finished": [],
        "task_stats": {},
        "inflight": {},
        "checkpoints": 4,
        **state_overrides,
    }
    (checkpoint / STATE_FILE).write_text(json.dumps(state))
    (checkpoint / PREDICTIONS_FILE).write_text("{}")
    return checkpoint


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("corrupt_state", "state.json is corrupt"),
        ("missing_predictions", "incomplete: missing predictions.json"),
        ("other_config", "written by a different config"),
        ("corrupt_inflight", "state.json is corrupt"),
        ("old_version", "unknown state version 1"),
    ],
)
def test_unusable_checkpoint_fails_fast(
    config: dict, tmp_path: Path, monkeypatch, capsys, restore_sigterm, damage: str, message: str
) -> None:
    overrides = {
        "corrupt_inflight": {"inflight": {"a-mirror": {"level": "high"}}},
        "old_version": {"version": 1},
    }
    checkpoint = fake_checkpoint(tmp_path / "staged", config, **overrides.get(damage, {}))
    if damage == "corrupt_state":
        (checkpoint / STATE_FILE).write_text('{"version": 1, "fini')
    elif damage == "missing_predictions":
        (checkpoint / PREDICTIONS_FILE).unlink()
    elif damage == "other_config":
        config = {**config, "seed": 8}
    run = ContractRun(tmp_path / "run", TTT, config, attempt=2, resume_dir=checkpoint)
    for name, value in run.contract_vars().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    assert ttt_job.main([]) == 2
    assert message in capsys.readouterr().err
    assert not run.messages("result")


def test_four_bit_on_a_cpu_worker_is_refused(
    config, tmp_path, monkeypatch, capsys, restore_sigterm
) -> None:
    config["model"] = {**config["model"], "load_in_4bit": True}
    (tmp_path / "c.json").write_text(json.dumps(config))
    monkeypatch.chdir(tmp_path)
    assert ttt_job.main(["--config", str(tmp_path / "c.json")]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_eval_job_scores_and_compares(
    tiny_tasks_dir: Path, tmp_path: Path, monkeypatch, restore_sigterm
) -> None:
    tasks = tiny_tasks()
    perfect = {
        t.task_id: [{"attempt_1": o.tolist(), "attempt_2": o.tolist()} for o in t.test_outputs]
        for t in tasks
    }
    partial = {"a-mirror": perfect["a-mirror"]}
    (tmp_path / "now.json").write_text(json.dumps(perfect))
    (tmp_path / "before.json").write_text(json.dumps(partial))
    config = {
        "data": {
            "kind": "folder",
            "path": str(tiny_tasks_dir),
            "cache_dir": str(tmp_path / "cache"),
        },
        "predictions": str(tmp_path / "now.json"),
        "baseline": str(tmp_path / "before.json"),
    }
    run = ContractRun(tmp_path / "eval", "ml.arc.eval_job", config)
    for name, value in run.contract_vars().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    assert eval_job.main([]) == 0
    result = run.result()
    assert result["score"] == 1.0 and result["baseline_score"] == 0.25
    assert result["newly_solved"] == ["b-recolour:0", "b-recolour:1", "c-tile:0"]
    assert result["newly_failed"] == []
    assert json.loads((run.output_dir / "scores.json").read_text())["solved_outputs"] == 4
    assert json.loads((run.output_dir / "regression.json").read_text())["still_solved"] == [
        "a-mirror:0"
    ]
    assert "3 newly solved" in (run.output_dir / "report.md").read_text()


def test_eval_job_reports_a_missing_predictions_file(
    tiny_tasks_dir, tmp_path, monkeypatch, capsys, restore_sigterm
) -> None:
    config = {
        "data": {
            "kind": "folder",
            "path": str(tiny_tasks_dir),
            "cache_dir": str(tmp_path / "cache"),
        },
        "predictions": str(tmp_path / "absent.json"),
    }
    (tmp_path / "c.json").write_text(json.dumps(config))
    monkeypatch.chdir(tmp_path)
    assert eval_job.main(["--config", str(tmp_path / "c.json")]) == 2
    assert "absent.json does not exist" in capsys.readouterr().err
