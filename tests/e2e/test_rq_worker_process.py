"""`baton rq-worker` as it runs under `baton up` or systemd: one process, whose threads run the
periodic jobs and move delayed jobs (an email's next try) onto the queue when they are due."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.job import JobStatus

from tests.e2e.conftest import Baton
from tests.support.stack import wait_until


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found.extend(int(child) for child in task.read_text().split())
    return found


def test_delayed_jobs_run_without_a_forked_scheduler(
    baton_factory: Callable[..., Baton],
) -> None:
    baton = baton_factory()
    (worker,) = [p for p in baton.stack.procs if p.name == "rq-worker"]
    queue = Queue(baton.settings.rq_queue, connection=Redis.from_url(baton.settings.redis_url))
    job = queue.enqueue_in(
        timedelta(seconds=1), "orchestrator.background.tasks.reconcile_queues", result_ttl=60
    )
    assert job.get_status() == JobStatus.SCHEDULED
    wait_until(
        lambda: job.get_status(refresh=True) == JobStatus.FINISHED,
        timeout=30,
        what="the delayed job to be moved onto the queue and run",
    )
    # The scheduler is a thread: no second copy of the control plane stays resident.
    assert _children(worker.popen.pid) == []
