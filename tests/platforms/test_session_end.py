"""Known session ends with real processes: a deadline, an EC2 spot notice. Nothing is lost."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Baton
from tests.platforms import standins
from tests.support.stack import wait_until
from worker.jobs.counter import expected_digest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _counter(steps: int, checkpoint_every: int) -> dict[str, Any]:
    config = {"steps": steps, "step_seconds": 0.1, "checkpoint_every": checkpoint_every}
    return {"name": "counter", "kind": "demo.counter", "config": config}


def _ended(attempt: dict[str, Any]) -> float:
    return datetime.fromisoformat(attempt["ended_at"]).timestamp()


def test_deadline_checkpoints_releases_and_the_next_worker_loses_nothing(
    baton_factory: Callable[..., Baton],
) -> None:
    steps = 150
    baton = baton_factory()
    experiment_id = baton.submit(**_counter(steps, checkpoint_every=50))
    deadline = time.time() + 20
    margin = 8
    worker_a = baton.start_worker(
        "worker-a", "--deadline", str(deadline), "--checkpoint-margin", str(margin)
    )
    # Worker A stops on its own before the deadline: checkpoint, upload, release, exit.
    assert worker_a.popen.wait(timeout=30) == 0, worker_a.output()[-3000:]
    assert time.time() < deadline, "worker A outlived its session"
    assert "session deadline" in worker_a.output()

    body = baton.get(experiment_id)
    assert body["status"] == "queued"
    (first,) = body["attempts"]
    assert first["outcome"] == "preempted", first
    assert "session deadline" in (first["reason"] or "")
    assert _ended(first) < deadline
    stopped_at = first["progress_step"]
    # The last checkpoint is the step it was at when asked to stop, not the last periodic one.
    assert stopped_at is not None and stopped_at % 50 != 0
    assert first["last_checkpoint_step"] == stopped_at

    # A worker whose session ends within the margin takes no work at all.
    late = baton.start_worker(
        "worker-late", "--deadline", str(time.time() + 5), "--checkpoint-margin", str(margin)
    )
    assert late.popen.wait(timeout=30) == 0
    assert len(baton.get(experiment_id)["attempts"]) == 1

    worker_b = baton.start_worker("worker-b")
    body = baton.wait_status(experiment_id, "succeeded", "failed", "lost", timeout=90)
    assert body["status"] == "succeeded", body
    second = body["attempts"][1]
    assert second["resumed_from_step"] == stopped_at, "zero lost steps"
    assert body["result"]["history"] == [
        {"attempt": 1, "start_step": 0},
        {"attempt": 2, "start_step": stopped_at},
    ]
    assert body["result"]["digest"] == expected_digest(steps)
    worker_b.stop()


def test_spot_notice_checkpoints_and_releases_within_ten_seconds(
    baton_factory: Callable[..., Baton],
) -> None:
    imds = standins.Imds(lifecycle="spot")
    with standins.serve(imds) as imds_url:
        baton = baton_factory()
        experiment_id = baton.submit(**_counter(1000, checkpoint_every=200))
        worker = baton.start_worker("spot-worker", "--imds-url", imds_url, "--spot-poll", "1")

        def progressing() -> bool:
            attempts = baton.get(experiment_id)["attempts"]
            return bool(attempts) and (attempts[0]["progress_step"] or 0) >= 10

        wait_until(progressing, timeout=60, what="the job to make progress")
        (me,) = baton.http.get("/api/v1/workers").json()
        assert me["platform"] == "ec2"
        assert imds.notice_reads > 0, "the worker must poll the notice while the job runs"

        imds.action = {"action": "terminate", "time": "2030-01-01T00:02:00Z"}
        noticed = time.monotonic()

        def released() -> dict[str, Any] | None:
            attempt = baton.get(experiment_id)["attempts"][0]
            return attempt if attempt["outcome"] else None

        first = wait_until(released, timeout=10, interval=0.1, what="the release")
        elapsed = time.monotonic() - noticed
        assert first["outcome"] == "preempted", first
        assert elapsed < 10, f"released {elapsed:.1f}s after the notice"
        assert "spot interruption" in (first["reason"] or "")
        assert first["last_checkpoint_step"] == first["progress_step"] > 0
        assert worker.popen.wait(timeout=15) == 0
        assert baton.get(experiment_id)["checkpoint_step"] == first["progress_step"]


def test_resumed_attempt_continues_the_same_wandb_run(baton_factory: Callable[..., Baton]) -> None:
    # The agents' own W&B key never reaches a job: the job names the user's secret instead.
    baton = baton_factory(WANDB_API_KEY="an-agent-key-no-job-sees")
    stored = baton.http.put("/api/v1/secrets/WANDB_API_KEY", json={"value": "wandb-test-key"})
    assert stored.status_code == 200, stored.text
    # exec: the job itself must get the SIGTERM and checkpoint, not a shell around it.
    command = f"exec {sys.executable} -m tests.platforms.wandb_job"
    experiment_id = baton.submit(
        name="wandb",
        kind="command",
        config={"command": command, "workdir": str(REPO)},
        secrets=["WANDB_API_KEY"],
    )
    worker_a = baton.start_worker("worker-a")
    wait_until(
        lambda: (baton.get(experiment_id)["attempts"] or [{}])[0].get("progress_step"),
        timeout=60,
        what="the first attempt to start",
    )
    worker_a.signal(signal.SIGTERM)
    assert worker_a.popen.wait(timeout=30) == 0
    baton.start_worker("worker-b")
    body = baton.wait_status(experiment_id, "succeeded", "failed", "lost", timeout=60)
    assert body["status"] == "succeeded", body
    assert [a["outcome"] for a in body["attempts"]] == ["preempted", "succeeded"]
    run = f"baton-{experiment_id}"
    assert body["result"] == {"runs": [[run, "allow"], [run, "allow"]], "key": "wandb-test-key"}
