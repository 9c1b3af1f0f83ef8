"""Run the control plane's RQ jobs in the test process, deterministically: a burst worker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from rq import SimpleWorker

from orchestrator.background import tasks
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings


@contextmanager
def task_runtime(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """Make the RQ tasks use ``settings`` (left alone, they read theirs from the environment)."""
    runtime = Runtime.from_settings(settings)
    monkeypatch.setattr(tasks, "_runtime", runtime)
    try:
        yield runtime
    finally:
        runtime.close()


def run_jobs(runtime: Runtime) -> None:
    """Run every queued job (and every scheduled retry that is due), then return."""
    SimpleWorker([runtime.queue], connection=runtime.redis).work(burst=True, with_scheduler=True)
