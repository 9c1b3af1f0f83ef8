"""Attempts never share state: a worker's disk that served another control plane replays
nothing, and no process of a job outlives its agent."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import Baton
from tests.support.stack import process_alive, wait_until
from worker.jobs.counter import expected_digest

COUNTER = {"step_seconds": 0.1, "checkpoint_every": 5}


def test_worker_that_served_another_control_plane_starts_experiment_1_from_scratch(
    baton_factory: Callable[..., Baton], own_redis: str, tmp_path: Path
) -> None:
    old = baton_factory()
    old_id = old.submit(name="old", kind="demo.counter", config={**COUNTER, "steps": 200})
    notebook = old.start_worker("notebook")
    wait_until(
        lambda: ((old.get(old_id)["attempts"] or [{}])[0].get("last_checkpoint_step") or 0) >= 10,
        timeout=60,
        what="the old experiment to checkpoint",
    )
    notebook.signal(signal.SIGKILL)  # the session dies mid-run, its files stay on disk
    notebook.popen.wait(10)
    old.stack.close()
    work_dir = tmp_path / "notebook"
    assert list(work_dir.glob("cp-*/*")), "the dead attempt left its directory behind"

    # A fresh control plane: new database, new Redis, new data dir; the same notebook disk.
    fresh = baton_factory(
        database_url=f"sqlite:///{tmp_path / 'fresh.db'}",
        redis=own_redis,
        data_dir=tmp_path / "fresh-data",
    )
    fresh_id = fresh.submit(name="fresh", kind="demo.counter", config={**COUNTER, "steps": 20})
    assert fresh_id == old_id == 1, "both control planes call their first experiment 1"
    fresh.start_worker("notebook")

    body = fresh.wait_status(fresh_id, "succeeded", "failed", "lost", timeout=90)
    assert body["status"] == "succeeded", body
    (attempt,) = body["attempts"]
    assert attempt["resumed_from_step"] is None
    assert body["result"]["history"] == [{"attempt": 1, "start_step": 0}]
    assert body["result"]["digest"] == expected_digest(20)
    assert body["checkpoint_step"] <= 20, "only its own checkpoints: none of the old 200 steps"
    # The dead attempt's leftovers were swept when the agent started; the finished one's too.
    assert not [p for p in work_dir.glob("cp-*/*") if p.is_dir()]


def test_sigkill_of_the_agent_alone_leaves_no_job_process(
    baton_factory: Callable[..., Baton], tmp_path: Path
) -> None:
    baton = baton_factory()
    pids = tmp_path / "pids"
    # A shell, the python it runs, and a daemon that left the job's process group.
    command = (
        f"echo $$ >> {pids}; "
        f"(setsid sh -c 'echo $$ >> {pids}; exec sleep 300' &); "
        f"python3 -c \"import os, time; open('{pids}', 'a').write(f'{{os.getpid()}}\\n'); "
        'time.sleep(300)"'
    )
    baton.submit(name="tree", kind="command", config={"command": command})
    agent = baton.start_worker("notebook")

    def three_pids() -> list[int] | None:
        found = pids.read_text().split() if pids.exists() else []
        return [int(p) for p in found] if len(found) == 3 else None

    job_pids = wait_until(three_pids, timeout=30, what="the job's three processes")
    assert all(process_alive(pid) for pid in job_pids)

    agent.signal(signal.SIGKILL)
    agent.popen.wait(5)
    wait_until(
        lambda: not any(process_alive(pid) for pid in job_pids),
        timeout=5,
        interval=0.05,
        what="every process of the job to die with its agent",
    )
