"""The agent's own lifecycle: SIGTERM hands the job back with nothing lost; a zombie whose
lease was taken away stops its job at once."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import Baton
from tests.support.stack import process_alive, wait_until
from worker.jobs.counter import expected_digest


def test_sigterm_checkpoints_releases_and_exits_zero(baton_factory: Callable[..., Baton]) -> None:
    baton = baton_factory()
    experiment_id = baton.submit(
        name="counter",
        kind="demo.counter",
        config={"steps": 60, "step_seconds": 0.2, "checkpoint_every": 50},
    )
    worker_a = baton.start_worker("worker-a")
    wait_until(
        lambda: (baton.get(experiment_id)["attempts"] or [{}])[0].get("progress_step") or 0,
        timeout=30,
        what="progress",
    )
    worker_a.signal(signal.SIGTERM)
    assert worker_a.popen.wait(30) == 0

    body = baton.get(experiment_id)
    first = body["attempts"][0]
    assert body["status"] == "queued" and first["outcome"] == "preempted"
    # The job checkpointed where it stopped (no periodic checkpoint had happened yet).
    stopped_at = first["last_checkpoint_step"]
    assert stopped_at is not None and 0 < stopped_at < 50
    assert body["failure_count"] == 0, "a preemption does not use the retry budget"

    baton.start_worker("worker-b")
    body = baton.wait_status(experiment_id, "succeeded", "failed", timeout=60)
    assert body["status"] == "succeeded"
    assert body["attempts"][1]["resumed_from_step"] == stopped_at
    assert body["result"]["history"][1] == {"attempt": 2, "start_step": stopped_at}
    assert body["result"]["digest"] == expected_digest(60)


def test_zombie_worker_stops_its_job_when_heartbeat_gets_409(
    baton_factory: Callable[..., Baton], tmp_path: Path
) -> None:
    baton = baton_factory()
    pidfile = tmp_path / "job.pid"
    experiment_id = baton.submit(
        name="sleeper", kind="command", config={"command": f"echo $$ > {pidfile}; exec sleep 300"}
    )
    worker = baton.start_worker("worker-a")
    pid = int(
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=30, what="pid")
    )
    pidfile.unlink()

    worker.signal(signal.SIGSTOP)  # a frozen VM: no heartbeats, but the job lives on
    try:
        wait_until(
            lambda: baton.get(experiment_id)["attempts"][0]["outcome"] == "lost",
            timeout=30,
            what="the reaper to declare attempt 1 lost",
        )
    finally:
        worker.signal(signal.SIGCONT)
    # Its next heartbeat is answered 409: the old job must die at once.
    wait_until(
        lambda: not process_alive(pid), timeout=5, interval=0.05, what="the zombie's job to stop"
    )
    # The same agent then claims the requeued experiment afresh, as attempt 2.
    wait_until(lambda: pidfile.exists(), timeout=30, what="attempt 2 to start")
    body = baton.get(experiment_id)
    assert [a["outcome"] for a in body["attempts"]] == ["lost", None]
    assert body["status"] == "running"
