"""A worker that starts with nothing but an enrollment code, against real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlmodel import Session, select

from orchestrator.db import make_engine
from orchestrator.models import Enrollment, Worker
from tests.e2e.conftest import Baton
from tests.support.enrollment import code_in
from tests.support.stack import Proc


def issue_code(baton: Baton, **env: str) -> str:
    """`baton bootstrap shell --enroll` on the control plane's host; the code its script holds."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "bootstrap",
            "shell",
            "--enroll",
            "--allow-loopback",
        ],
        env={**baton.stack.env, "BATON_PUBLIC_URL": baton.stack.url, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "BATON_WORKER_TOKEN" not in done.stdout and "single-use" in done.stderr
    return code_in(done.stdout)


def start_enrolled(
    baton: Baton, name: str, home: Path, *argv: str, code_env: str | None = None
) -> Proc:
    """`baton-worker` with no token: a notebook's environment, a HOME of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env.update({"HOME": str(home), "PYTHONUNBUFFERED": "1"})
    if code_env is not None:
        env["BATON_ENROLL_CODE"] = code_env
    home.mkdir(parents=True, exist_ok=True)
    argv = ("--api", baton.stack.url, "--name", name, "--platform", "local", *argv)
    return baton.stack._spawn(name, [sys.executable, "-m", "worker", *argv], env=env)


def refused(proc: Proc) -> str:
    """The worker exits at once with the refusal (status 2); its output."""
    assert proc.popen.wait(60) == 2, proc.output()[-3000:]
    return proc.output()


def files_holding(root: Path, *needles: str) -> list[Path]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(needle.encode() in data for needle in needles):
                hits.append(path)
    return hits


def test_a_worker_with_only_a_code_runs_jobs_and_the_code_works_once(
    baton_factory: Callable[..., Baton], tmp_path: Path
) -> None:
    baton = baton_factory()
    code = issue_code(baton)
    env_dump = tmp_path / "job-env.txt"
    counter = baton.submit(
        name="counter", kind="demo.counter", config={"steps": 5, "step_seconds": 0.05}
    )
    printer = baton.submit(name="env", kind="command", config={"command": f"env > {env_dump}"})

    home = tmp_path / "home-a"
    worker = start_enrolled(baton, "enrolled-a", home, "--max-jobs", "2", code_env=code)
    for experiment_id in (counter, printer):
        assert baton.wait_status(experiment_id, "succeeded", "failed")["status"] == "succeeded"
    assert worker.popen.wait(60) == 0, worker.output()[-3000:]
    assert baton.get(counter)["result"]["steps"] == 5

    # It worked as the token its code bought.
    engine = make_engine(baton.settings.resolved_database_url)
    with Session(engine) as session:
        (enrollment,) = session.exec(select(Enrollment)).all()
        (registered,) = session.exec(select(Worker)).all()
    engine.dispose()
    assert enrollment.used_at is not None
    assert registered.token_id == enrollment.worker_token_id

    # Neither the code nor the token reached the job, the disk, or the agent's own log.
    job_env = env_dump.read_text()
    assert "BATON_ENROLL_CODE" not in job_env and code not in job_env
    assert "bwt_" not in job_env and "BATON_WORKER_TOKEN" not in job_env
    assert (home / ".baton" / "worker").is_dir(), "the attempts ran under this HOME"
    assert files_holding(home, code, "bwt_") == []
    assert "bwt_" not in worker.output() and "enrolled" in worker.output()

    # The code was spent: a second worker presenting it is told so and stops.
    second = start_enrolled(baton, "enrolled-b", tmp_path / "home-b", "--enroll", code)
    assert "already used" in refused(second)


def test_two_agents_racing_for_one_code_get_one_token(
    baton_factory: Callable[..., Baton], database_url: str
) -> None:
    baton = baton_factory(database_url=database_url)  # SQLite and Postgres lock differently
    code = issue_code(baton)
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def exchange() -> None:
        barrier.wait()
        reply = httpx.post(f"{baton.stack.url}/api/v1/workers/enroll", json={"code": code})
        statuses.append(reply.status_code)

    threads = [threading.Thread(target=exchange) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [200, 410, 410, 410]


def test_expired_and_unknown_codes_are_refused(
    baton_factory: Callable[..., Baton], tmp_path: Path
) -> None:
    baton = baton_factory()
    code = issue_code(baton, BATON_ENROLL_SECONDS="1")
    time.sleep(1.5)
    expired = start_enrolled(baton, "late", tmp_path / "home-late", code_env=code)
    assert "expired at" in refused(expired)
    unknown = start_enrolled(baton, "stranger", tmp_path / "home-x", "--enroll", "bec_" + "z" * 43)
    assert "unknown enrollment code" in refused(unknown)
