"""`baton login` in a script: no terminal, the password from stdin or a flag, never a prompt."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import ADMIN, Baton
from tests.support.cli import Cli

pytestmark = pytest.mark.e2e


def _one_line(stderr: str) -> str:
    (line,) = stderr.strip().splitlines()
    assert "Traceback" not in line
    return line


def test_login_reads_the_password_from_stdin(
    baton_factory: Callable[..., Baton], tmp_path: Path
) -> None:
    baton = baton_factory()
    url, (email, password) = baton.stack.url, ADMIN
    cli = Cli(tmp_path / "config")

    done = cli("login", "--url", url, "--email", email, "--password-stdin", input=password + "\n")
    assert done.code == 0, done
    assert f"logged in to {url} as {email}" in done.stderr
    assert json.loads(cli.credentials.read_text())["email"] == email
    listed = cli("ls", "--json")
    assert listed.code == 0 and listed.json() == [], listed

    wrong = Cli(tmp_path / "wrong")
    refused = wrong("login", "--url", url, "--email", email, "--password-stdin", input="nope\n")
    assert refused.code == 1 and "wrong email or password" in _one_line(refused.stderr)
    assert not wrong.credentials.exists()


def test_login_takes_a_flag_and_never_prompts_without_a_terminal(
    baton_factory: Callable[..., Baton], tmp_path: Path
) -> None:
    baton = baton_factory()
    url, (email, password) = baton.stack.url, ADMIN
    cli = Cli(tmp_path / "config")

    flagged = cli("login", "--url", url, "--email", email, "--password", password, input="")
    assert flagged.code == 0, flagged

    bare = Cli(tmp_path / "bare")
    no_password = bare("login", "--url", url, "--email", email, input="")
    assert no_password.code == 2
    assert "--password-stdin" in _one_line(no_password.stderr)
    no_email = bare("login", "--url", url, "--password-stdin", input=password + "\n")
    assert no_email.code == 2 and "--email" in _one_line(no_email.stderr)
    both = bare(
        "login",
        "--url",
        url,
        "--email",
        email,
        "--password",
        password,
        "--password-stdin",
        input=password + "\n",
    )
    assert both.code == 2 and "once" in _one_line(both.stderr)
    empty = bare("login", "--url", url, "--email", email, "--password-stdin", input="")
    assert empty.code == 2 and "no password" in _one_line(empty.stderr)
    assert not bare.credentials.exists()
