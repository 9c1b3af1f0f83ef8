"""A worker cut off from the control plane fences itself: with no heartbeat answered for a lease
it stops its job (checkpointing), and once the link is back it learns whether its lease held.

The worker runs in a network namespace of its own (tests/support/netns.py) whose only link,
to the control plane's address, the test takes down.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Baton
from tests.support import hosts, netns
from tests.support.stack import Proc, wait_until
from worker.jobs.counter import expected_digest

HEARTBEAT = 1.0
LEASE = 6.0  # long enough for heartbeats on a busy 2-core machine
STEPS = 150
COUNTER = {
    "name": "counter",
    "kind": "demo.counter",
    "config": {"steps": STEPS, "step_seconds": 0.1, "checkpoint_every": 10},
}


@pytest.fixture
def island() -> Iterator[netns.Island]:
    problem = hosts.unavailable()
    if problem is not None:
        pytest.skip(problem)
    with netns.island() as made:
        yield made


def job_pids(isle: netns.Island, agent: Proc) -> list[int]:
    """The job's processes (its guard and the counter): whatever in the island is not the agent."""
    return [pid for pid in isle.pids() if pid != agent.popen.pid]


def start(baton_factory: Callable[..., Baton], isle: netns.Island) -> tuple[Baton, int, Proc]:
    """A control plane on the island's link, the counter job, and the island's worker running
    it with a checkpoint reported."""
    baton = baton_factory(
        host=isle.outside,
        BATON_HEARTBEAT_SECONDS=str(HEARTBEAT),
        BATON_LEASE_SECONDS=str(LEASE),
    )
    experiment_id = baton.submit(**COUNTER)
    agent = baton.start_worker("island", "--platform", "local", via=isle.argv([]))

    def checkpointed() -> bool:
        return (baton.get(experiment_id)["checkpoint_step"] or 0) >= 10

    wait_until(checkpointed, timeout=90, what="a checkpoint reported from the island")
    assert job_pids(isle, agent), "the job runs in the island"
    return baton, experiment_id, agent


def cut_until_the_job_is_gone(isle: netns.Island, agent: Proc) -> None:
    isle.cut()
    cut_at = time.monotonic()
    wait_until(
        lambda: not job_pids(isle, agent),
        timeout=LEASE + HEARTBEAT + 10,
        interval=0.05,
        what="the island's job to stop",
    )
    stopped_after = time.monotonic() - cut_at
    assert stopped_after <= LEASE + HEARTBEAT, f"the job ran {stopped_after:.1f}s after the cut"
    assert agent.alive(), agent.output()[-3000:]


def assert_resumed_once(body: dict[str, Any], first_outcome: str) -> int:
    assert body["status"] == "succeeded", body
    outcomes = [a["outcome"] for a in body["attempts"]]
    assert outcomes == [first_outcome, "succeeded"], outcomes
    first, second = body["attempts"]
    resumed = second["resumed_from_step"]
    assert resumed is not None and resumed > 0 and resumed == first["last_checkpoint_step"]
    assert body["result"]["digest"] == expected_digest(STEPS)
    assert body["result"]["history"] == [
        {"attempt": 1, "start_step": 0},
        {"attempt": 2, "start_step": resumed},
    ]
    return int(resumed)


def test_a_partitioned_worker_stops_its_job_and_its_stale_lease_changes_nothing(
    baton_factory: Callable[..., Baton], island: netns.Island
) -> None:
    baton, experiment_id, agent = start(baton_factory, island)
    cut_until_the_job_is_gone(island, agent)

    # The control plane gives up on the lease and another worker resumes the work.
    other = baton.start_worker("mainland", "--platform", "local")

    def resumed_elsewhere() -> dict[str, Any] | None:
        body = baton.get(experiment_id)
        attempts = body["attempts"]
        return body if len(attempts) == 2 and attempts[1]["progress_step"] else None

    during = wait_until(resumed_elsewhere, timeout=60, what="the requeued attempt to run")
    assert during["attempts"][0]["outcome"] == "lost"

    island.mend()
    wait_until(
        lambda: "did not survive the outage" in agent.output(),
        timeout=LEASE * 3,
        what="the island's worker to hear that its lease is stale",
    )
    assert "HTTP 409" in agent.output()
    after = baton.get(experiment_id)
    assert after["attempts"][0] == during["attempts"][0], "the stale lease changed nothing"
    assert (after["checkpoint_step"] or 0) >= (during["checkpoint_step"] or 0)

    body = baton.wait_status(experiment_id, "succeeded", "failed", timeout=90)
    assert_resumed_once(body, "lost")
    first, second = body["attempts"]
    assert first["worker_id"] != second["worker_id"]

    # The fenced worker goes back to work once the control plane answers again.
    other.stop()
    follow = baton.submit(name="next", kind="command", config={"command": "true"})
    done = baton.wait_status(follow, "succeeded", "failed", timeout=60)
    assert done["status"] == "succeeded"
    assert done["attempts"][0]["worker_id"] == first["worker_id"]
