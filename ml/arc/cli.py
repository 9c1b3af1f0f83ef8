"""What the job entry points share: the contract context, with a ``--config`` override."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from worker.context import JobContext


def job_context(prog: str, description: str, argv: Sequence[str] | None = None) -> JobContext:
    """The job's context from the environment; ``--config FILE`` replaces ``$BATON_CONFIG``
    so a job can be run by hand (outside Baton it works in ./baton-run)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", type=Path, help="JSON config file (default: $BATON_CONFIG)")
    args = parser.parse_args(argv)
    ctx = JobContext.from_env()
    if args.config is not None:
        ctx.config = json.loads(args.config.read_text())
    return ctx
