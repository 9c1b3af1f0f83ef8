"""Postgres stopped for twice the lease while jobs run, then started again: nothing is lost.

A server of the test's own (tests/support/pgserver.py), stopped and started for real, under a
real `baton serve`, `baton rq-worker` and two `baton-worker` agents.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Baton
from tests.support.pgserver import postgres_server
from tests.support.stack import wait_until
from worker.jobs.counter import expected_digest

STEPS = 60
LEASE_SECONDS = 4  # tests.support.stack.stack_env


def test_postgres_down_for_two_leases_loses_no_running_work(
    tmp_path: Path, baton_factory: Callable[..., Baton]
) -> None:
    with postgres_server() as pg:
        if pg is None:
            pytest.skip("PostgreSQL binaries (pg_ctl, initdb) are not installed")
        baton = baton_factory(database_url=pg.url, AWS_EC2_METADATA_DISABLED="true")
        config = {"steps": STEPS, "step_seconds": 0.25, "checkpoint_every": 5}
        ids = [baton.submit(name=f"job-{n}", kind="demo.counter", config=config) for n in range(2)]
        for n in range(2):
            baton.start_worker(f"worker-{n}", "--platform", "local")

        def both_past_a_checkpoint() -> bool:
            bodies = [baton.get(i) for i in ids]
            return all(
                b["status"] == "running" and (b["attempts"][-1]["progress_step"] or 0) >= 8
                for b in bodies
            )

        wait_until(both_past_a_checkpoint, timeout=90, what="both jobs past a checkpoint")

        pg.stop()
        time.sleep(2 * LEASE_SECONDS)
        pg.start()

        for experiment_id in ids:
            body = baton.wait_status(experiment_id, "succeeded", "failed", "lost", timeout=180)
            assert body["status"] == "succeeded", body
            assert body["result"]["digest"] == expected_digest(STEPS)
            outcomes = [a["outcome"] for a in body["attempts"]]
            # No attempt was taken for lost: a worker that stopped its job while it could not
            # be heard released it once the database was back (preempted), and it resumed.
            assert "lost" not in outcomes, body["attempts"]
            assert outcomes.count("succeeded") == 1 and outcomes[-1] == "succeeded", outcomes
            assert set(outcomes) <= {"preempted", "succeeded"}, outcomes
