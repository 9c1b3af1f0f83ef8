"""Ready-to-paste notebook cells (and .ipynb files) that start a worker on each platform.

A cell installs the worker, reads the worker token from the platform's secret store (Kaggle
Secrets, Colab's userdata, else the environment or a hidden prompt) and runs the agent in the
notebook's own Python. The token is never part of the cell, so never part of a saved notebook.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

TOKEN_SECRET = "BATON_WORKER_TOKEN"
OPTIONAL_SECRETS = ("WANDB_API_KEY",)  # passed to jobs when present (worker/tracking.py)

_FROM_STORE = """\
for name in ({names}):
    try:
        os.environ[name] = {getter}(name)
    except Exception:  # noqa: BLE001 - only the worker token is required; the agent says so
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
    secret_name: str
    secret_store: str
    notes: list[str]
    terms: str | None
    pip: str


def _secrets_code(target: Target) -> str:
    if target.store_import is None:
        return _FROM_PROMPT.format(token=TOKEN_SECRET)
    names = ", ".join(repr(n) for n in (TOKEN_SECRET, *OPTIONAL_SECRETS))
    return target.store_import + "\n\n" + _FROM_STORE.format(names=names, getter=target.getter)


def _comments(target: Target) -> list[str]:
    lines = [
        f"# {target.title}",
        f"# Worker token: {TOKEN_SECRET}, from {target.secret_store}.",
    ]
    lines += [f"# {note}" for note in target.notes]
    if target.terms:
        lines.append(f"# NOTE: {target.terms}")
    return lines


def _cell(
    target: Target, *, api_url: str, pip: str, args: Sequence[str], env: Mapping[str, str]
) -> str:
    settings = [f"os.environ[{k!r}] = {v!r}" for k, v in {"BATON_API": api_url, **env}.items()]
    return "\n".join(
        [
            *_comments(target),
            "import importlib",
            "import os",
            "import subprocess",
            "import sys",
            "",
            "subprocess.run(",
            f'    [sys.executable, "-m", "pip", "install", "--quiet", {pip!r}], check=True',
            ")",
            "importlib.invalidate_caches()",
            _secrets_code(target).rstrip("\n"),
            *settings,
            "",
            "from worker.__main__ import main",
            "",
            f"exit_code = main({list(args)!r})",
            "",
        ]
    )


def _script(target: Target, *, api_url: str, pip: str, args: Sequence[str]) -> str:
    venv = '"${BATON_VENV:-$HOME/.baton/venv}"'
    return "\n".join(
        [
            "#!/usr/bin/env bash",
            *_comments(target),
            "set -euo pipefail",
            f': "${{{TOKEN_SECRET}:?export {TOKEN_SECRET} first (baton tokens create)}}"',
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
) -> Bootstrap:
    """The bootstrap for ``platform``; KeyError for an unknown one."""
    target = TARGETS[platform]
    return Bootstrap(
        platform=target.name,
        title=target.title,
        cell=_cell(target, api_url=api_url, pip=pip, args=args, env=env or {}),
        script=_script(target, api_url=api_url, pip=pip, args=args)
        if platform == "shell"
        else None,
        secret_name=TOKEN_SECRET,
        secret_store=target.secret_store,
        notes=list(target.notes),
        terms=target.terms,
        pip=pip,
    )


def _source(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def notebook(bootstrap: Bootstrap) -> dict[str, Any]:
    """An nbformat 4.5 notebook: a note on what it does, then the cell."""
    target = TARGETS[bootstrap.platform]
    intro = [f"# {bootstrap.title}\n", "\n"]
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
