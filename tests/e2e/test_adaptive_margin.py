"""Before a known deadline, a real agent stops its real job a measured margin before it (a few
times what the job's stops take) instead of the whole configured margin, and still in time:
the job's last step is in its final checkpoint."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from tests.e2e.conftest import Baton

CONFIGURED = 15.0  # the margin a job gets before its stops are measured
FLOOR = 2.0


def _unix(text: str) -> float:
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def test_fast_stops_are_made_late_and_lose_nothing(baton_factory: Callable[..., Baton]) -> None:
    baton = baton_factory()
    experiment_id = baton.submit(
        name="counter",
        kind="demo.counter",
        # 0.1 s steps, a checkpoint every second: its stops take well under a second.
        config={"steps": 1000, "step_seconds": 0.1, "checkpoint_every": 10},
    )
    deadline = time.time() + 30
    worker = baton.start_worker(
        "worker-a",
        *("--deadline", f"{deadline:.3f}", "--checkpoint-margin", str(CONFIGURED)),
        *("--checkpoint-margin-min", str(FLOOR), "--checkpoint-margin-max", str(CONFIGURED)),
    )
    assert worker.popen.wait(60) == 0, worker.output()

    body = baton.get(experiment_id)
    (attempt,) = body["attempts"]
    assert attempt["outcome"] == "preempted" and body["status"] == "queued"
    ended = _unix(attempt["ended_at"])
    # A fixed margin would have stopped it at deadline - 15 s; measured, it ran on to about
    # deadline - 2 s (3 x a stop of well under a second, and the floor), and finished the stop,
    # its upload and the release before the deadline.
    assert deadline - CONFIGURED + 8 < ended <= deadline, (deadline - ended, worker.output())
    assert attempt["last_checkpoint_step"] == attempt["progress_step"], "steps were lost"
    assert "the stop took" in worker.output()
