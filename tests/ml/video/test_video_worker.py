"""ml.video through the real control plane and real worker agents: kill-and-resume with
identical metrics, and a dataset -> four branches -> compare group on two workers."""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from video_helpers import tiny_dataset_config

from tests.e2e.conftest import Baton, baton_factory  # noqa: F401  (the real-process stack)
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e

TRAIN: dict[str, Any] = {
    "forecast_horizon": 2,
    "val_fraction": 0.2,
    "test_fraction": 0.25,
    "batch_size": 8,
    "max_steps": 60,
    "eval_every": 20,
    "checkpoint_every": 10,
    "log_every": 5,
    "warmup_steps": 10,
    "early_stopping_patience": None,
    "seed": 5,
    "num_threads": 1,
}
METRICS = ("test_accuracy", "test_forecast_nmae", "test_forecast_nmae_at_horizon", "steps")


def _dataset() -> dict[str, Any]:
    return tiny_dataset_config().model_dump(mode="json")


def _train(backbone: str, heads: list[str], **extra: Any) -> dict[str, Any]:
    return {
        **TRAIN,
        "model": {"backbone": backbone, "heads": heads, "width": 4, "alpha": 2},
        **extra,
    }


def test_train_killed_worker_resumes_with_identical_metrics(
    baton_factory: Callable[..., Baton],  # noqa: F811
) -> None:
    baton = baton_factory(OMP_NUM_THREADS="1")
    config = _train("i3d", ["classify", "forecast"], dataset=_dataset())
    killed = baton.submit(name="killed", kind="ml.video.train", config=config)
    worker_a = baton.start_worker("worker-a")

    def checkpointed() -> bool:
        attempts = baton.get(killed)["attempts"]
        return bool(attempts) and (attempts[0]["last_checkpoint_step"] or 0) >= 20

    wait_until(checkpointed, timeout=240, interval=0.2, what="a checkpoint at step >= 20")
    worker_a.signal(signal.SIGKILL)
    worker_a.popen.wait(10)
    straight = baton.submit(name="straight", kind="ml.video.train", config=config)
    baton.start_worker("worker-b")

    resumed = baton.wait_status(killed, "succeeded", "failed", "lost", timeout=300)
    reference = baton.wait_status(straight, "succeeded", "failed", "lost", timeout=300)
    assert resumed["status"] == reference["status"] == "succeeded"
    first, second = resumed["attempts"]
    assert (
        first["outcome"] == "lost" and second["resumed_from_step"] == first["last_checkpoint_step"]
    )
    assert len(reference["attempts"]) == 1
    for key in METRICS:
        assert resumed["result"][key] == reference["result"][key], key


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_dataset_branches_compare_group_on_two_workers(
    baton_factory: Callable[..., Baton],  # noqa: F811
) -> None:
    baton = baton_factory(OMP_NUM_THREADS="1")
    branches = {
        "i3d-both": _train("i3d", ["classify", "forecast"]),
        "i3d-classify": _train("i3d", ["classify"]),
        "slowfast-both": _train("slowfast", ["classify", "forecast"]),
        "slowfast-classify": _train("slowfast", ["classify"]),
    }
    members = [
        {"key": "data", "name": "data", "kind": "ml.video.dataset", "config": _dataset()},
        *(
            {"key": k, "name": k, "kind": "ml.video.train", "config": c, "depends_on": ["data"]}
            for k, c in branches.items()
        ),
        # A branch that breaks must not stop the others.
        {
            "key": "broken",
            "name": "broken",
            "kind": "command",
            "config": {"command": "exit 4"},
            "max_attempts": 1,
            "depends_on": ["data"],
        },
        {
            "key": "compare",
            "name": "compare",
            "kind": "ml.video.compare",
            "config": {},
            "depends_on": list(branches),
        },
    ]
    reply = baton.http.post(
        "/api/v1/groups",
        json={"name": "video branches", "compare": ["test_accuracy"], "experiments": members},
    )
    assert reply.status_code == 201, reply.text
    group_id = reply.json()["id"]
    baton.start_worker("worker-a")
    baton.start_worker("worker-b")

    def finished() -> dict[str, Any] | None:
        group: dict[str, Any] = baton.http.get(f"/api/v1/groups/{group_id}").json()
        return group if group["status"] == "finished" else None

    group = wait_until(finished, timeout=600, interval=1, what="every stage to finish")
    status = {e["name"]: e["status"] for e in group["experiments"]}
    assert status == {
        **dict.fromkeys(["data", *branches, "compare"], "succeeded"),
        "broken": "failed",
    }

    details = {
        name: baton.get(e["id"]) for name, e in ((e["name"], e) for e in group["experiments"])
    }
    data_end = _at(details["data"]["attempts"][-1]["ended_at"])
    branch_starts = [_at(details[b]["attempts"][0]["started_at"]) for b in branches]
    assert all(start >= data_end for start in branch_starts), "branches waited for the dataset"
    last_branch_end = max(_at(details[b]["attempts"][-1]["ended_at"]) for b in branches)
    assert _at(details["compare"]["attempts"][0]["started_at"]) >= last_branch_end
    workers_used = {details[b]["attempts"][-1]["worker_id"] for b in branches}
    assert len(workers_used) == 2, "branches ran in parallel on both workers"

    rows = {row["name"]: row for row in group["comparison"]}
    for branch in branches:
        accuracy = rows[branch]["values"]["test_accuracy"]
        assert accuracy is not None and 0 <= accuracy <= 1
        assert rows[branch]["attempts"] == 1
    assert rows["broken"]["values"]["test_accuracy"] is None
    ranked = details["compare"]["result"]["table"]
    assert {row["name"] for row in ranked} == set(branches)
