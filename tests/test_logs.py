"""Job output: the tail arithmetic, the API on both databases, and shipping end to end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from baton_client import BatonClient
from orchestrator.services.logs import Tail
from orchestrator.settings import Settings
from tests.e2e.conftest import ADMIN, Baton, baton_factory  # noqa: F401  (fixture reused)
from tests.support.api import create_user, create_worker_token, login, make_settings
from tests.support.cli import Cli
from tests.support.experiments import submit
from tests.support.stack import wait_until
from tests.support.workers import bearer, claim, finish, register

CAP = 1024


# --- the tail, alone ---------------------------------------------------------------------------


def test_tail_appends_once_per_offset() -> None:
    tail = Tail().append(offset=0, data="hello ", cap=CAP)
    assert tail.append(offset=0, data="hello ", cap=CAP) == tail, "a retried chunk is stored once"
    tail = tail.append(offset=3, data="lo world", cap=CAP)  # overlaps: only the new part counts
    assert (tail.text, tail.start, tail.end) == ("hello world", 0, 11)
    gap = tail.append(offset=20, data="later", cap=CAP)
    assert (gap.text, gap.start, gap.end) == ("later", 20, 25), "a gap starts the tail afresh"


def test_tail_cap_cuts_at_a_character_boundary() -> None:
    tail = Tail()
    for n in range(100):  # 6 bytes each: "é" is two
        tail = tail.append(offset=tail.end, data=f"é{n:03d}\n", cap=17)
    # 17 bytes back from the end is the middle of an "é": the tail starts after it.
    assert (tail.text, tail.end, tail.start) == ("097\né098\né099\n", 600, 584)
    assert tail.read(0) == (584, tail.text), "asking for dropped output gets what is kept"
    assert tail.read(589) == (590, "098\né099\n"), "a read inside a character starts after it"
    assert tail.read(700) == (600, ""), "past the end: nothing, from the end"


# --- the API, on SQLite and Postgres ------------------------------------------------------------


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        BATON_LOG_TAIL_BYTES=CAP,
    )


def test_ship_read_follow_cap_and_fencing(client: TestClient, settings: Settings) -> None:
    create_user(settings, "u@example.com")
    create_user(settings, "other@example.com")
    user, other = login(client, "u@example.com"), login(client, "other@example.com")
    token = create_worker_token(settings)
    experiment_id = submit(client, user, "talks")
    logs_url = f"/api/v1/experiments/{experiment_id}/logs"
    before = client.get(logs_url, headers=user).json()
    assert before["attempt"] is None and before["text"] == "" and not before["eof"]

    grant = claim(client, token, register(client, token))
    assert grant is not None

    def ship(offset: int, data: str, lease: str = grant["lease_token"]) -> httpx.Response:
        body = {"lease_token": lease, "offset": offset, "data": data}
        return client.post("/api/v1/leases/logs", json=body, headers=bearer(token))

    assert ship(0, "hello\n").json() == {"next_offset": 6}
    assert ship(0, "hello\n").json() == {"next_offset": 6}, "a retry is idempotent"
    read = client.get(logs_url, headers=user).json()
    assert (read["attempt"], read["text"], read["next_offset"]) == (1, "hello\n", 6)
    assert not read["eof"]
    assert client.get(logs_url, headers=other).status_code == 404, "someone else's logs are hidden"

    # Follow: a waiting reader is answered as soon as output arrives.
    threading.Timer(0.5, lambda: ship(6, "world\n")).start()
    started = time.monotonic()
    news = client.get(logs_url, params={"offset": 6, "wait": 20}, headers=user).json()
    assert news["text"] == "world\n" and time.monotonic() - started < 10
    quiet = client.get(logs_url, params={"offset": 12, "wait": 0.5}, headers=user).json()
    assert quiet["text"] == "" and quiet["next_offset"] == 12

    lines = "".join(f"line {n:04d}\n" for n in range(300))  # 3000 bytes: three times the cap
    assert ship(12, lines).json() == {"next_offset": 12 + len(lines)}
    full = client.get(logs_url, headers=user).json()
    assert full["truncated"] and full["total_bytes"] == 12 + len(lines)
    assert len(full["text"].encode()) <= CAP and full["text"].endswith("line 0299\n")
    assert full["offset"] == full["total_bytes"] - len(full["text"].encode())

    finish(client, token, "complete", grant)
    after = {"offset": full["next_offset"], "wait": 30}
    done = client.get(logs_url, params=after, headers=user).json()
    assert done["eof"] and done["status"] == "succeeded"
    assert ship(done["total_bytes"], "late\n").status_code == 409, "an ended lease ships nothing"
    assert client.get(logs_url, params={"attempt": 3}, headers=user).status_code == 404


# --- end to end: a real worker ships a real job's output ------------------------------------------


@pytest.mark.e2e
def test_job_output_reaches_baton_logs_live_and_capped(
    baton_factory: Callable[..., Baton],  # noqa: F811
    tmp_path: Path,
) -> None:
    baton = baton_factory(BATON_LOG_TAIL_BYTES="2048")
    release = tmp_path / "release"
    script = (
        "import os, sys, time\n"
        "print('ready', flush=True)\n"
        "print('to stderr', file=sys.stderr, flush=True)\n"
        f"while not os.path.exists({str(release)!r}): time.sleep(0.1)\n"
        "for n in range(400): print(f'line {n:04d}')\n"
    )
    (tmp_path / "job.py").write_text(script)
    command = f"python3 {tmp_path / 'job.py'}"
    experiment_id = baton.submit(name="talker", kind="command", config={"command": command})
    baton.start_worker("worker-a")

    with BatonClient(baton.stack.url) as client:
        client.login(email=ADMIN[0], password=ADMIN[1])

        def shipped_while_running() -> bool:
            chunk = client.logs(experiment_id)
            return chunk["status"] == "running" and "ready\nto stderr\n" in chunk["text"]

        wait_until(shipped_while_running, timeout=60, what="output shipped while the job runs")
        release.touch()
        assert client.wait(experiment_id, timeout=90)["status"] == "succeeded"
        chunk = client.logs(experiment_id)
    assert chunk["eof"] and chunk["truncated"]
    assert chunk["total_bytes"] == len("ready\nto stderr\n") + 400 * len("line 0000\n")

    cli = Cli(tmp_path / "config")
    cli.login(baton.stack.url, *ADMIN)
    shown = cli("logs", str(experiment_id))
    assert shown.code == 0, shown
    assert shown.stdout.endswith("line 0398\nline 0399\n") and "line 0000" not in shown.stdout
    assert len(shown.stdout.encode()) <= 2048, "the control plane keeps only the capped tail"
    assert "no longer kept" in shown.stderr
