"""A worker killed mid-run: the next one resumes from its last checkpoint, with nothing lost."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable

import httpx
from sqlmodel import Session, select

from orchestrator.db import make_engine
from orchestrator.models import Attempt
from tests.e2e.conftest import Baton
from tests.support.stack import wait_until
from worker.jobs.counter import expected_digest

STEPS = 40
COUNTER = {
    "name": "counter",
    "kind": "demo.counter",
    "config": {"steps": STEPS, "step_seconds": 0.25, "checkpoint_every": 5},
}


def test_killed_worker_is_resumed_elsewhere_exactly_once(
    baton_factory: Callable[..., Baton],
) -> None:
    baton = baton_factory()
    experiment_id = baton.submit(**COUNTER)
    worker_a = baton.start_worker("worker-a")

    def checkpointed() -> bool:
        attempts = baton.get(experiment_id)["attempts"]
        return bool(attempts) and (attempts[0]["last_checkpoint_step"] or 0) >= 10

    wait_until(checkpointed, timeout=60, what="attempt 1 to report a checkpoint at step >= 10")
    worker_a.signal(signal.SIGKILL)  # what a notebook session dying looks like
    worker_a.popen.wait(10)
    worker_b = baton.start_worker("worker-b")

    body = baton.wait_status(experiment_id, "succeeded", "failed", "lost", timeout=90)
    assert body["status"] == "succeeded", body
    first, second = body["attempts"]
    assert first["outcome"] == "lost" and second["outcome"] == "succeeded"
    assert first["worker_id"] != second["worker_id"]
    resumed = second["resumed_from_step"]
    assert resumed is not None and resumed > 0, (
        "worker B must resume from a checkpoint, not from zero"
    )
    assert resumed == first["last_checkpoint_step"]
    # The resumed run's final output is the uninterrupted run's.
    assert body["result"]["digest"] == expected_digest(STEPS)
    assert body["result"]["history"] == [
        {"attempt": 1, "start_step": 0},
        {"attempt": 2, "start_step": resumed},
    ]
    assert body["attempt_count"] == 2

    # The killed attempt's token comes back late: refused, and nothing changes.
    with Session(make_engine(baton.settings.resolved_database_url)) as session:
        stale = session.exec(
            select(Attempt).where(Attempt.experiment_id == experiment_id, Attempt.number == 1)
        ).one()
    late = httpx.post(
        f"{baton.stack.url}/api/v1/leases/complete",
        json={"lease_token": stale.lease_token, "result": {"digest": "bogus"}},
        headers={"Authorization": f"Bearer {baton.worker_token}"},
    )
    assert late.status_code == 409, late.text
    after = baton.get(experiment_id)
    assert after["result"] == body["result"] and after["attempts"] == body["attempts"]
    assert sum(a["outcome"] == "succeeded" for a in after["attempts"]) == 1

    # Exactly one completion notice, sent by the RQ worker.
    log = baton.settings.data_dir / "notifications.log"

    def notices() -> list[dict[str, object]]:
        if not log.exists():
            return []
        return [
            n
            for n in map(json.loads, log.read_text().splitlines())
            if n["experiment_id"] == experiment_id
        ]

    assert wait_until(notices, timeout=20, what="the completion notice")
    assert [n["status"] for n in notices()] == ["succeeded"]
    worker_b.stop()
