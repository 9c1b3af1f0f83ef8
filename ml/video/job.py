"""What the ml.video job entry points share: reading the contract and stopping on request."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from worker.context import JobContext

# A job that checkpointed and exited because Baton asked it to: the conventional status of
# a process ended by SIGTERM, so it is never mistaken for success or for the job's own error.
EXIT_STOPPED = 143
DEFAULT_OUTPUT_DIR = Path("baton-run/output")
# A training run's result, in its output directory: what the compare job reads.
METRICS_FILE = "metrics.json"

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class StopRequested(Exception):
    """Baton asked the job to stop; whatever state should survive has been handed over."""


def output_dir(ctx: JobContext) -> Path:
    """Where artifacts go: BATON_OUTPUT_DIR, or ./baton-run/output when run standalone."""
    return ctx.output_dir or DEFAULT_OUTPUT_DIR


def start_job(config_model: type[ConfigT], argv: list[str]) -> tuple[JobContext, ConfigT]:
    """The job context and validated config.

    Under Baton the config comes from BATON_CONFIG. Standalone, a JSON file may be passed
    as the only argument; with neither, the config model's defaults apply.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ctx = JobContext.from_env()
    raw = ctx.config
    if not raw and argv:
        raw = json.loads(Path(argv[0]).read_text())
        ctx.config = raw
    return ctx, config_model.model_validate(raw)


def run_until_stopped(job: Callable[[], object]) -> int:
    """Run ``job`` and give the process exit status: 0 done, EXIT_STOPPED if asked to stop."""
    try:
        job()
    except StopRequested:
        logging.getLogger(__name__).info("stopped on request; exiting with %d", EXIT_STOPPED)
        return EXIT_STOPPED
    return 0
