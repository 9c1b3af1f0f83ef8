"""Ready-to-paste notebook cells (and .ipynb files) that start a worker on each platform.

A cell installs the worker, reads the worker token from the platform's secret store (Kaggle
Secrets, Colab's userdata, else the environment or a hidden prompt) and runs the agent in the
notebook's own Python. The token is never part of the cell, so never part of a saved notebook.
An enrolling cell (``enroll=``) reads no token: it carries a single-use enrollment code,
expiring within the hour, that the agent exchanges for a token of one session.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from orchestrator.services.enrollment import Issued

TOKEN_SECRET = "BATON_WORKER_TOKEN"

_FROM_STORE = """\
for name in {names}:
    try:
        os.environ[name] = {getter}(name)
    except Exception:  # noqa: BLE001 - absent secrets are skipped; the agent names a missing token
        pass
"""
_FROM_PROMPT = """\
import getpass

if not os.environ.get({token!r}):
    os.environ[{token!r}] = getpass.getpass("Baton worker token: ")
"""

COLAB_TERMS = (
    "Colab's terms forbid running distributed-computing workers on runtimes without paid "
    "compute units: run a Baton worker on Colab only with compute units (Pro or pay as you go)."
)


@dataclass(frozen=True)
class Target:
    name: str
    title: str
    secret_store: str  # where the token is kept, in words
    store_import: str | None  # Python that binds ``getter``; None: environment or prompt
    getter: str
    notes: tuple[str, ...] = ()
    terms: str | None = None
    notebook_metadata: Mapping[str, Any] | None = None


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "kaggle",
            "Baton worker on Kaggle",
            secret_store="Kaggle Secrets (Add-ons > Secrets)",
            store_import="from kaggle_secrets import UserSecretsClient",
            getter="UserSecretsClient().get_secret",
            notes=(
                "Settings: Accelerator GPU, Internet on.",
                "GPU sessions end after 9 to 12 hours; the worker checkpoints and hands over "
                "before that. About 30 GPU hours a week.",
            ),
        ),
        Target(
            "colab",
            "Baton worker on Google Colab",
            secret_store="Colab Secrets (the key icon; allow notebook access)",
            store_import="from google.colab import userdata",
            getter="userdata.get",
            notes=("Runtime > Change runtime type > GPU.", "Sessions end after at most 12 hours."),
            terms=COLAB_TERMS,
            notebook_metadata={"accelerator": "GPU", "colab": {"provenance": []}},
        ),
        Target(
            "paperspace",
            "Baton worker on Paperspace Gradient",
            secret_store="the environment (Gradient secrets), else a hidden prompt",
            store_import=None,
            getter="",
            notes=("Free machines stop after 6 hours; the worker hands over before that.",),
        ),
        Target(
            "studiolab",
            "Baton worker on SageMaker Studio Lab",
            secret_store="the environment, else a hidden prompt",
            store_import=None,
            getter="",
            notes=("GPU runtimes last 4 hours; the worker hands over before that.",),
        ),
        Target(
            "shell",
            "Baton worker in a shell (EC2, a Mac, any Linux box)",
            secret_store="the environment variable BATON_WORKER_TOKEN, else a hidden prompt",
            store_import=None,
            getter="",
            notes=(
                "On a spot EC2 instance the worker watches the interruption notice and hands "
                "over when it appears. On a Mac, jobs get the GPU through PyTorch MPS.",
            ),
        ),
    )
}


class Bootstrap(BaseModel):
    platform: str
    title: str
    cell: str  # Python for a notebook cell
    script: str | None  # a shell script, for the shell target
    secret_name: str | None  # None: the cell enrolls with a code instead
    secret_store: str
    notes: list[str]
    terms: str | None
    pip: str
    enroll_expires_at: datetime | None = None  # when the cell's enrollment code stops working


def _secrets_code(target: Target, *, enrolling: bool) -> str:
    """Reads the worker token, the only secret a notebook holds: keys its jobs need (W&B,
    Hugging Face) are the user's Baton secrets (`baton secrets set`), named by experiments."""
    if enrolling:
        return ""
    if target.store_import is None:
        return _FROM_PROMPT.format(token=TOKEN_SECRET)
    return (
        target.store_import
        + "\n\n"
        + _FROM_STORE.format(names=repr((TOKEN_SECRET,)), getter=target.getter)
    )


def _enroll_note(enroll: Issued) -> str:
    return (
        f"a single-use enrollment code, valid until {enroll.expires_at:%Y-%m-%d %H:%M} UTC: "
        "it starts one worker session; make a new cell for the next one"
    )


def _comments(target: Target, enroll: Issued | None) -> list[str]:
    credential = (
        f"Worker token: {TOKEN_SECRET}, from {target.secret_store}."
        if enroll is None
        else f"This cell carries {_enroll_note(enroll)}."
    )
    lines = [f"# {target.title}", f"# {credential}"]
    lines += [f"# {note}" for note in target.notes]
    if target.terms:
        lines.append(f"# NOTE: {target.terms}")
    return lines


def _cell(
    target: Target,
    *,
    api_url: str,
    pip: str,
    args: Sequence[str],
    env: Mapping[str, str],
    enroll: Issued | None,
) -> str:
    settings = [f"os.environ[{k!r}] = {v!r}" for k, v in {"BATON_API": api_url, **env}.items()]
    secrets_code = _secrets_code(target, enrolling=enroll is not None).rstrip("\n")
    return "\n".join(
        [
            *_comments(target, enroll),
            "import importlib",
            "import os",
            "import subprocess",
            "import sys",
            "",
            "subprocess.run(",
            f'    [sys.executable, "-m", "pip", "install", "--quiet", {pip!r}], check=True',
            ")",
            "importlib.invalidate_caches()",
            *([secrets_code] if secrets_code else []),
            *settings,
            "",
            "from worker.__main__ import main",
            "",
            f"exit_code = main({list(args)!r})",
            # A refused agent fails the cell, and a launched kernel ends as an error.
            "if exit_code:",
            "    raise SystemExit(exit_code)",
            "",
        ]
    )


def _script(
    target: Target, *, api_url: str, pip: str, args: Sequence[str], enroll: Issued | None
) -> str:
    venv = '"${BATON_VENV:-$HOME/.baton/venv}"'
    need_token = f': "${{{TOKEN_SECRET}:?export {TOKEN_SECRET} first (baton tokens create)}}"'
    return "\n".join(
        [
            "#!/usr/bin/env bash",
            *_comments(target, enroll),
            "set -euo pipefail",
            *([need_token] if enroll is None else []),
            f"python3 -m venv {venv}",
            f"{venv}/bin/pip install --quiet {shlex.quote(pip)}",
            f"exec {venv}/bin/baton-worker {shlex.join(['--api', api_url, *args])}",
            "",
        ]
    )


def render(
    platform: str,
    *,
    api_url: str,
    pip: str,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    enroll: Issued | None = None,
) -> Bootstrap:
    """The bootstrap for ``platform``; KeyError for an unknown one. With ``enroll`` it carries
    that code (the agent's ``--enroll``) and reads no worker token."""
    target = TARGETS[platform]
    if enroll is not None:
        args = ["--enroll", enroll.code, *args]
    return Bootstrap(
        platform=target.name,
        title=target.title,
        cell=_cell(target, api_url=api_url, pip=pip, args=args, env=env or {}, enroll=enroll),
        script=_script(target, api_url=api_url, pip=pip, args=args, enroll=enroll)
        if platform == "shell"
        else None,
        secret_name=TOKEN_SECRET if enroll is None else None,
        secret_store=target.secret_store if enroll is None else _enroll_note(enroll),
        notes=list(target.notes),
        terms=target.terms,
        pip=pip,
        enroll_expires_at=enroll.expires_at if enroll else None,
    )


def _source(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def notebook(bootstrap: Bootstrap) -> dict[str, Any]:
    """An nbformat 4.5 notebook: a note on what it does, then the cell."""
    target = TARGETS[bootstrap.platform]
    intro = [f"# {bootstrap.title}\n", "\n"]
    if bootstrap.secret_name is None:
        intro.append(f"This notebook carries {bootstrap.secret_store}.\n")
    else:
        intro.append(f"The worker token, **{TOKEN_SECRET}**, comes from {target.secret_store}: ")
        intro.append("it is read at run time and never written into this notebook.\n")
    intro += [f"\n- {note}" for note in bootstrap.notes]
    if bootstrap.terms:
        intro.append(f"\n\n**Terms:** {bootstrap.terms}")
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
            **(target.notebook_metadata or {}),
        },
        "cells": [
            {"cell_type": "markdown", "id": uuid.uuid4().hex[:8], "metadata": {}, "source": intro},
            {
                "cell_type": "code",
                "id": uuid.uuid4().hex[:8],
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": _source(bootstrap.cell),
            },
        ],
    }
