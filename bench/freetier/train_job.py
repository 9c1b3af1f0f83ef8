"""A resumable training job of realistic shape, run on a notebook by Baton or by hand.

Each step sleeps its share of an hour (scaled by the scenario's time scale); a start-up cost
is paid at every (re)start; a checkpoint takes its time and writes its bytes, every so often
and when asked to stop. Under Baton (``BATON_EXPERIMENT_ID`` set) it resumes and checkpoints
through the job contract (worker.context); by hand it saves to, and resumes from, a folder of
its own (a notebook's persisted storage).

Every event goes to a ledger file of this process (``--ledger DIR``), the ground truth the
bench measures from: start (resumed from which step), ready, step, checkpoint, done.
Stdlib and the worker only: it runs in a notebook's Python, which has nothing else of Baton's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


class Ledger:
    def __init__(self, folder: Path, job: str) -> None:
        run = f"{job}.{os.getpid()}.{time.time_ns()}"
        self._file = (folder / f"{run}.jsonl").open("a", buffering=1)
        self.host = os.environ.get("USER") or str(os.getuid())

    def write(self, event: str, **fields: Any) -> None:
        self._file.write(json.dumps({"t": time.time(), "e": event, **fields}) + "\n")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--job", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--step-seconds", type=float, required=True)
    parser.add_argument("--startup-seconds", type=float, default=0.0)
    parser.add_argument("--checkpoint-every", type=float, required=True, help="wall seconds")
    parser.add_argument("--checkpoint-seconds", type=float, default=0.0)
    parser.add_argument("--checkpoint-bytes", type=int, default=1024)
    parser.add_argument("--ledger", type=Path, required=True)
    parser.add_argument("--save-dir", type=Path, help="hand-run: the notebook's own storage")
    return parser.parse_args(argv)


class Baton:
    """Resume and checkpoint through the job contract."""

    def __init__(self) -> None:
        from worker.context import JobContext

        self.ctx = JobContext.from_env()

    def resume(self) -> dict[str, Any] | None:
        folder = self.ctx.resume()
        return None if folder is None else json.loads((folder / "state.json").read_text())

    def save(self, folder: Path, step: int) -> None:
        self.ctx.checkpoint(folder, step)

    def progress(self, step: int, total: int) -> None:
        self.ctx.progress(step, total)

    def should_stop(self) -> bool:
        return self.ctx.should_stop()

    def finish(self, **values: Any) -> None:
        self.ctx.result(**values)


class ByHand:
    """Resume from and save to a folder of the notebook's own; nobody asks it to stop."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def resume(self) -> dict[str, Any] | None:
        state = self.folder / "latest" / "state.json"
        return json.loads(state.read_text()) if state.exists() else None

    def save(self, folder: Path, step: int) -> None:
        latest, old = self.folder / "latest", self.folder / "previous"
        shutil.rmtree(old, ignore_errors=True)
        if latest.exists():
            latest.rename(old)
        shutil.copytree(folder, latest)
        shutil.rmtree(old, ignore_errors=True)

    def progress(self, step: int, total: int) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def finish(self, **values: Any) -> None:
        (self.folder / "done.json").write_text(json.dumps(values))


def main(argv: list[str]) -> int:
    args = parse(argv)
    ledger = Ledger(args.ledger, args.job)
    contract = Baton() if os.environ.get("BATON_EXPERIMENT_ID") else ByHand(args.save_dir)
    state = contract.resume() or {"step": 0}
    step: int = state["step"]
    ledger.write(
        "start",
        job=args.job,
        host=ledger.host,
        attempt=os.environ.get("BATON_ATTEMPT"),
        resumed=step,
    )
    time.sleep(args.startup_seconds)  # loading the model, the data, warming up
    ledger.write("ready")
    scratch = Path(tempfile.mkdtemp())
    saved_at = time.monotonic()
    while step < args.steps:
        time.sleep(args.step_seconds)
        step += 1
        ledger.write("step", n=step)
        contract.progress(step, args.steps)
        stop = contract.should_stop()
        if stop or time.monotonic() - saved_at >= args.checkpoint_every:
            time.sleep(args.checkpoint_seconds)  # writing the weights and optimizer state
            (scratch / "state.json").write_text(json.dumps({"step": step}))
            (scratch / "weights.bin").write_bytes(b"\0" * args.checkpoint_bytes)
            contract.save(scratch, step)
            ledger.write("checkpoint", n=step)
            saved_at = time.monotonic()
        if stop:
            ledger.write("stopped", n=step)
            return 0
    contract.finish(job=args.job, steps=step)
    ledger.write("done", n=step)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
