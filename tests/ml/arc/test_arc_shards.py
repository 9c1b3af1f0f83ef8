"""Splitting a run's tasks over processes (one per GPU of a T4x2) and merging them back."""

from __future__ import annotations

import json
from pathlib import Path

from arc_contract import ContractRun
from arc_fixtures import tiny_job_config

from ml.arc.configs import TTTJobConfig
from ml.arc.shards import merge_shard, partition, shard_state
from ml.arc.state import RunState
from ml.arc.ttt_job import TTTJob
from worker.context import JobContext

TTT = "ml.arc.ttt_job"


def test_partition_is_round_robin_disjoint_and_complete() -> None:
    ids = [f"t{i}" for i in range(7)]
    shards = partition(ids, 2)
    assert shards == [["t0", "t2", "t4", "t6"], ["t1", "t3", "t5"]]
    assert partition(ids, 2) == shards  # deterministic
    assert sorted(t for shard in shards for t in shard) == sorted(ids)
    assert partition(["only"], 2) == [["only"], []]


def test_a_shard_gets_its_share_and_gives_back_its_progress(tmp_path: Path) -> None:
    run = RunState(tmp_path / "run", "run-hash")
    run.finish("a", [{"attempt_1": [[1]]}], {"ttt": "full"})
    run.inflight["b"] = {"level": 1, "crashes": 0, "stopped": 0}
    share = shard_state(run, ["a", "b", "d"], tmp_path / "share", "shard-hash")
    restored = RunState.restore(share.root, tmp_path / "child", "shard-hash")
    assert restored.finished == ["a"] and list(restored.inflight) == ["b"]

    # The child finishes b, starts d; the merge brings both into the run's state.
    restored.finish("b", [{"attempt_1": [[2]]}], {"ttt": "reduced"})
    restored.start("d")
    assert merge_shard(run, ["a", "b", "d"], restored.root)
    assert run.finished == ["a", "b"] and run.predictions["b"] == [{"attempt_1": [[2]]}]
    assert run.inflight == {"d": {"level": 0, "crashes": 0, "stopped": 0}}
    assert not merge_shard(run, ["a", "b", "d"], restored.root)  # nothing new


def test_two_processes_predict_what_one_does(
    tiny_tasks_dir: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    config = tiny_job_config(tiny_tasks_dir, tiny_model_dir, tmp_path / "cache")
    straight = ContractRun(tmp_path / "straight", TTT, config)
    done = straight.run()
    assert done.returncode == 0, done.stderr[-3000:]

    # Two CPU "devices": the children differ only in the environment they are given.
    sharded = ContractRun(tmp_path / "sharded", TTT, config)
    for name, value in {**sharded.contract_vars(), "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[3]))
    monkeypatch.chdir(sharded.root)
    ctx = JobContext.from_env(install_signal_handler=False)
    job = TTTJob(ctx, TTTJobConfig.model_validate(config), shard_envs=[{}, {}])
    assert job.run() == 0

    submission = (sharded.output_dir / "submission.json").read_text()
    assert json.loads(submission) == json.loads(
        (straight.output_dir / "submission.json").read_text()
    )
    result, expected = sharded.result(), straight.result()
    assert result["score"] == expected["score"]
    assert {t: s["final_loss"] for t, s in result["task_stats"].items()} == {
        t: s["final_loss"] for t, s in expected["task_stats"].items()
    }
    # Each child ran its own share, on its own output directory.
    assert sorted(p.name for p in (sharded.output_dir / "shard-0" / "adapters").iterdir()) == [
        "a-mirror",
        "c-tile",
    ]
    assert [p.name for p in (sharded.output_dir / "shard-1" / "adapters").iterdir()] == [
        "b-recolour"
    ]
    # The run's checkpoints are merged ones; the last holds every task.
    last = json.loads((sharded.latest_checkpoint() / "state.json").read_text())
    assert sorted(last["finished"]) == sorted(result["task_stats"]) and last["inflight"] == {}
