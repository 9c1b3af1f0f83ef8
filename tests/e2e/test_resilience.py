"""Redis loses everything, or the API dies, while work is queued and running: nothing is lost."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from redis import Redis

from tests.e2e.conftest import Baton
from tests.support.stack import wait_until
from worker.jobs.counter import expected_digest


def _counter(name: str, steps: int = 20) -> dict[str, object]:
    return {
        "name": name,
        "kind": "demo.counter",
        "config": {"steps": steps, "step_seconds": 0.2, "checkpoint_every": 5},
    }


def test_flushall_with_queued_and_running_work(
    own_redis: str, baton_factory: Callable[..., Baton]
) -> None:
    # FLUSHALL wipes every DB of a server: on a Redis of our own, other test runs are safe.
    baton = baton_factory(redis=own_redis)
    ids = [baton.submit(**_counter(f"job-{n}")) for n in range(3)]
    baton.start_worker("worker-a")
    wait_until(
        lambda: baton.get(ids[0])["status"] == "running", timeout=30, what="the first job to run"
    )
    wait_until(
        lambda: (baton.get(ids[0])["attempts"][0]["progress_step"] or 0) >= 3,
        timeout=30,
        what="progress",
    )
    statuses = [baton.get(i)["status"] for i in ids]
    assert statuses[0] == "running" and statuses[1:] == ["queued", "queued"]

    Redis.from_url(own_redis).flushall()

    for experiment_id in ids:
        body = baton.wait_status(experiment_id, "succeeded", "failed", "lost", timeout=120)
        assert body["status"] == "succeeded", body
        assert body["result"]["digest"] == expected_digest(20)
    # The running job kept its lease through the flush: no attempt was lost.
    assert baton.get(ids[0])["attempt_count"] == 1


def test_api_killed_and_restarted_while_a_job_runs(baton_factory: Callable[..., Baton]) -> None:
    baton = baton_factory()
    experiment_id = baton.submit(**_counter("long", steps=40))
    baton.start_worker("worker-a")
    wait_until(
        lambda: (baton.get(experiment_id)["attempts"] or [{}])[0].get("progress_step") or 0,
        timeout=30,
        what="the job to make progress",
    )
    api = baton.stack.api
    assert api is not None
    api.signal(signal.SIGKILL)
    api.popen.wait(10)
    # Down for longer than a lease (4 s): the reaper must not call the job lost meanwhile.
    time.sleep(6)
    baton.stack.start_api()

    body = baton.wait_status(experiment_id, "succeeded", "failed", "lost", timeout=120)
    assert body["status"] == "succeeded", body
    # With no heartbeat answered for a lease, the worker stopped its job with a checkpoint
    # (it cannot tell an outage from being cut off); its lease still held when the API came
    # back, so it reported that checkpoint and released the attempt, which resumed from there.
    first, second = body["attempts"]
    assert [first["outcome"], second["outcome"]] == ["preempted", "succeeded"]
    assert "control plane unreachable" in (first["reason"] or "")
    resumed = second["resumed_from_step"]
    assert resumed is not None and resumed > 0 and resumed == first["last_checkpoint_step"]
    assert body["result"]["digest"] == expected_digest(40)
