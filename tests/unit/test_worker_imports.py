"""The worker agent runs in any notebook: it must not pull in the control plane's stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "fastapi", "sqlalchemy", "sqlmodel", "redis")

_CHECK = (
    "import sys; import worker.agent, worker.context, worker.__main__; "
    f"bad=[m for m in {HEAVY!r} if m in sys.modules]; assert not bad, bad"
)


def test_worker_imports_without_the_control_plane_stack() -> None:
    # A fresh interpreter: this pytest process has imported all of them already.
    run = subprocess.run(
        [sys.executable, "-c", _CHECK],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert run.returncode == 0, run.stderr[-3000:]


def test_the_check_itself_notices_a_heavy_import() -> None:
    """Control: the same check fails once one of the modules is imported."""
    run = subprocess.run(
        [sys.executable, "-c", "import redis; " + _CHECK],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert run.returncode != 0 and "redis" in run.stderr
