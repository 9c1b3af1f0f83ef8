"""`baton` user commands as real subprocesses against a real server, worker and database."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from baton_client import BatonClient, CredentialStore
from tests.e2e.conftest import ADMIN, Baton
from tests.support.cli import Cli
from tests.support.stack import free_port

pytestmark = pytest.mark.e2e

JOB = """\
name: cli-job
kind: command
config:
  command: for i in 1 2 3; do echo "line $i"; sleep 0.3; done; echo oops >&2
tags: [cli]
"""


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "config")


def _one_clear_line(result_stderr: str) -> str:
    lines = result_stderr.strip().splitlines()
    assert len(lines) == 1, result_stderr
    assert "Traceback" not in result_stderr
    return lines[0]


def test_login_submit_follow_logs_and_json(
    baton_factory: Callable[..., Baton], cli: Cli, tmp_path: Path
) -> None:
    baton = baton_factory()
    login = cli.login(baton.stack.url, *ADMIN)
    assert baton.stack.url in login.stderr
    assert stat.S_IMODE(cli.credentials.stat().st_mode) == 0o600
    assert json.loads(cli.credentials.read_text())["url"] == baton.stack.url

    baton.start_worker("worker-a")
    spec = tmp_path / "job.yaml"
    spec.write_text(JOB)
    followed = cli("submit", str(spec), "--follow")
    assert followed.code == 0, followed
    assert "line 1\nline 2\nline 3\noops\n" in followed.stdout, "--follow streams the output"
    assert "succeeded" in followed.stderr

    listed = cli("ls", "--json")
    assert listed.code == 0, listed
    (item,) = listed.json()
    assert (item["name"], item["status"], item["tags"]) == ("cli-job", "succeeded", ["cli"])
    experiment_id = str(item["id"])

    shown = cli("show", experiment_id, "--json").json()
    assert [a["outcome"] for a in shown["attempts"]] == ["succeeded"]
    logs = cli("logs", experiment_id)
    assert (logs.code, logs.stdout) == (0, "line 1\nline 2\nline 3\noops\n"), logs
    chunk = cli("logs", experiment_id, "--json").json()
    assert chunk["eof"] and chunk["attempt"] == 1 and chunk["text"].startswith("line 1")
    assert chunk["next_offset"] == chunk["total_bytes"] == len(chunk["text"].encode())
    (worker,) = cli("workers", "--json").json()
    assert worker["name"] == "worker-a"
    usage = cli("quota", "--json").json()
    assert [p["platform"] for p in usage["platforms"]] == ["local"]

    # Flags alone, JSON out; the human views render without error.
    submitted = cli("submit", "--command", "echo hi", "--name", "flags", "--tag", "x", "--json")
    assert submitted.code == 0, submitted
    assert submitted.json()["config"]["command"] == "echo hi"
    for args in (["ls"], ["show", experiment_id], ["workers"], ["quota"]):
        human = cli(*args)
        assert human.code == 0 and human.stdout.strip(), (args, human)


def test_wrong_password_cancel_retry_refresh_dead_server(
    baton_factory: Callable[..., Baton], cli: Cli
) -> None:
    baton = baton_factory()
    wrong = cli("login", "--url", baton.stack.url, "--email", ADMIN[0], "--password", "wrong-one")
    assert wrong.code == 1, wrong
    assert "wrong email or password" in _one_clear_line(wrong.stderr)
    assert not cli.credentials.exists()

    cli.login(baton.stack.url, *ADMIN)
    submitted = cli("submit", "--command", "sleep 600", "--json").json()
    experiment_id = str(submitted["id"])

    canceled = cli("cancel", experiment_id)
    assert canceled.code == 0 and "canceled" in canceled.stdout, canceled
    again = cli("cancel", experiment_id)
    assert again.code == 1 and "already canceled" in _one_clear_line(again.stderr)
    retried = cli("retry", experiment_id, "--json")
    assert retried.code == 0 and retried.json()["status"] == "queued", retried

    # An access token the server refuses: the client refreshes once and saves the new pair
    # (refresh tokens rotate, so keeping the old one would lock the next command out).
    saved = json.loads(cli.credentials.read_text())
    cli.credentials.write_text(json.dumps({**saved, "access_token": "expired-or-garbage"}))
    listed = cli("ls", "--json")
    assert listed.code == 0, listed
    assert [e["id"] for e in listed.json()] == [submitted["id"]]
    renewed = json.loads(cli.credentials.read_text())
    assert renewed["refresh_token"] != saved["refresh_token"]
    assert renewed["access_token"] != "expired-or-garbage"
    assert stat.S_IMODE(cli.credentials.stat().st_mode) == 0o600

    # The Python client, on the same saved login: pagination walks every page.
    more = [cli("submit", "--command", "true", "--json").json()["id"] for _ in range(2)]
    with BatonClient.from_config(store=CredentialStore(cli.credentials)) as client:
        assert client.url == baton.stack.url
        walked = [e["id"] for e in client.iter_experiments(page_size=1)]
    assert walked == [*reversed(more), submitted["id"]]

    missing = cli("show", "999")
    assert missing.code == 1 and "not found" in _one_clear_line(missing.stderr)

    # The server goes away: one line that says what to do, no traceback, non-zero.
    assert baton.stack.api is not None
    baton.stack.api.stop()
    dead = cli("ls")
    assert dead.code == 3, dead
    line = _one_clear_line(dead.stderr)
    assert f"cannot reach Baton at {baton.stack.url}" in line and "baton serve" in line


def test_dead_server_and_no_login(cli: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    dead = cli("login", "--url", url, "--email", "a@example.com", "--password", "x" * 8)
    assert dead.code == 3, dead
    line = _one_clear_line(dead.stderr)
    assert f"cannot reach Baton at {url}" in line and "is `baton serve` running?" in line

    anonymous = cli("ls", "--url", url)
    assert anonymous.code == 1, anonymous
    assert f"run `baton login --url {url}`" in _one_clear_line(anonymous.stderr)

    bad_spec = cli("submit", "--url", url, "--set", "novalue")
    assert bad_spec.code == 2 and "KEY=VALUE" in _one_clear_line(bad_spec.stderr)
