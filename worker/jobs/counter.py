"""The built-in resumable demo job (kind ``demo.counter``).

It folds each step into a SHA-256 chain, sleeping a little per step, and checkpoints the
chain every few steps. An interrupted run that resumes from a checkpoint ends with exactly
the digest of an uninterrupted run; one that restarted from zero would too, so the result
also records where each attempt started, which is how tests tell the two apart.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

from worker.context import JobContext

STATE = "state.json"


def fold(digest: str, step: int) -> str:
    return hashlib.sha256(f"{digest}:{step}".encode()).hexdigest()


def expected_digest(steps: int) -> str:
    digest = ""
    for step in range(steps):
        digest = fold(digest, step)
    return digest


def main() -> int:
    ctx = JobContext.from_env()
    steps = int(ctx.config.get("steps", 30))
    step_seconds = float(ctx.config.get("step_seconds", 0.2))
    every = int(ctx.config.get("checkpoint_every", 5))
    fail_at = ctx.config.get("fail_at_step")

    step, digest, history = 0, "", []
    resume = ctx.resume()
    if resume is not None:
        state = json.loads((resume / STATE).read_text())
        step, digest, history = state["step"], state["digest"], state["history"]
        print(f"resumed at step {step}", flush=True)
    history.append({"attempt": ctx.attempt, "start_step": step})

    scratch = Path(tempfile.mkdtemp(prefix="counter-"))
    while step < steps:
        if ctx.should_stop():
            print(f"asked to stop at step {step}: checkpointing", flush=True)
            save(ctx, scratch, step, digest, history)
            return 0
        if fail_at is not None and step == fail_at:
            print(f"failing on purpose at step {step}", file=sys.stderr, flush=True)
            return 3
        time.sleep(step_seconds)
        digest = fold(digest, step)
        step += 1
        ctx.progress(step, steps)
        if step % every == 0 and step < steps:
            save(ctx, scratch, step, digest, history)
    ctx.result(steps=steps, digest=digest, history=history)
    print(f"done: {digest}", flush=True)
    return 0


def save(
    ctx: JobContext, scratch: Path, step: int, digest: str, history: list[dict[str, int]]
) -> None:
    (scratch / STATE).write_text(json.dumps({"step": step, "digest": digest, "history": history}))
    ctx.checkpoint(scratch, step)


if __name__ == "__main__":
    sys.exit(main())
