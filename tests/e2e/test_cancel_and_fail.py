"""Cancel stops the child process within a heartbeat; a job's own failures use the retry budget."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import Baton
from tests.support.stack import process_alive, wait_until

HEARTBEAT = 2.0


def test_cancel_running_job_stops_child_within_one_heartbeat(
    baton_factory: Callable[..., Baton], tmp_path: Path
) -> None:
    baton = baton_factory(BATON_HEARTBEAT_SECONDS=str(HEARTBEAT), BATON_LEASE_SECONDS="6")
    pidfile = tmp_path / "job.pid"
    experiment_id = baton.submit(
        name="sleeper", kind="command", config={"command": f"echo $$ > {pidfile}; exec sleep 300"}
    )
    baton.start_worker("worker-a")
    pid = int(
        wait_until(
            lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=30, what="the job pid"
        )
    )
    assert process_alive(pid)

    started = time.monotonic()
    reply = baton.http.post(f"/api/v1/experiments/{experiment_id}/cancel")
    assert reply.status_code == 200 and reply.json()["status"] == "canceled"
    wait_until(
        lambda: not process_alive(pid), timeout=HEARTBEAT + 5, interval=0.05, what="the job to stop"
    )
    elapsed = time.monotonic() - started
    assert elapsed <= HEARTBEAT + 0.5, f"child stopped {elapsed:.2f}s after cancel"

    def attempt_closed() -> bool:
        return baton.get(experiment_id)["attempts"][0]["outcome"] == "canceled"

    wait_until(attempt_closed, timeout=15, what="the attempt to be closed as canceled")
    assert baton.get(experiment_id)["status"] == "canceled"


def test_queued_cancel_never_runs(baton_factory: Callable[..., Baton], tmp_path: Path) -> None:
    baton = baton_factory()
    marker = tmp_path / "ran"
    experiment_id = baton.submit(
        name="never", kind="command", config={"command": f"touch {marker}"}
    )
    assert baton.http.post(f"/api/v1/experiments/{experiment_id}/cancel").status_code == 200
    follow = baton.submit(name="after", kind="command", config={"command": "true"})
    baton.start_worker("worker-a")
    baton.wait_status(follow, "succeeded", timeout=60)
    assert not marker.exists()
    body = baton.get(experiment_id)
    assert body["status"] == "canceled" and body["attempts"] == []


def test_failures_use_the_retry_budget_then_fail(baton_factory: Callable[..., Baton]) -> None:
    baton = baton_factory()
    experiment_id = baton.submit(
        name="broken", kind="command", config={"command": "echo boom >&2; exit 7"}, max_attempts=2
    )
    baton.start_worker("worker-a")
    body = baton.wait_status(experiment_id, "failed", "succeeded", timeout=60)
    assert body["status"] == "failed"
    assert [a["outcome"] for a in body["attempts"]] == ["failed", "failed"]
    assert [a["exit_code"] for a in body["attempts"]] == [7, 7]
    assert "exited with code 7" in (body["error"] or "")
    retried = baton.http.post(f"/api/v1/experiments/{experiment_id}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
    body = baton.wait_status(experiment_id, "failed", "succeeded", timeout=60)
    assert len(body["attempts"]) == 4, "a retry grants a fresh budget of max_attempts"
