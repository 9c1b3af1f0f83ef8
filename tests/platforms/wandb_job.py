"""A job that records the W&B run it was given, per attempt (tests/platforms/test_session_end.py).

The first attempt waits to be stopped and checkpoints what it saw; the resumed one reports
both attempts' W&B settings as its result.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from worker.context import JobContext

RUNS = "runs.json"


def main() -> int:
    ctx = JobContext.from_env()
    resume = ctx.resume()
    runs = json.loads((resume / RUNS).read_text()) if resume else []
    runs.append([os.environ.get("WANDB_RUN_ID"), os.environ.get("WANDB_RESUME")])
    if resume is None:
        ctx.progress(1)
        end = time.monotonic() + 120
        while not ctx.should_stop() and time.monotonic() < end:
            time.sleep(0.1)
        scratch = Path(tempfile.mkdtemp())
        (scratch / RUNS).write_text(json.dumps(runs))
        ctx.checkpoint(scratch, 1)
        return 0
    ctx.result(runs=runs, key=os.environ.get("WANDB_API_KEY"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
