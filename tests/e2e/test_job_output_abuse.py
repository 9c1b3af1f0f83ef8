"""A job cannot take its agent down: whatever it writes on its progress channel, the agent stays
up, each experiment ends in a clear state, and the same worker takes the next job."""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Baton
from tests.support.stack import process_alive, wait_until
from worker.agent import report
from worker.client import WorkerClient
from worker.messages import MAX_METRICS, MAX_RESULT_BYTES

HEARTBEAT = 1.0


def job(body: str) -> str:
    """A `command` running ``body`` in Python, with ``put(line)`` writing a raw line (its newline
    added) to the progress channel."""
    script = (
        "import json, os, time\n"
        "channel = open(os.environ['BATON_PROGRESS_FILE'], 'a')\n"
        "def put(line):\n"
        "    channel.write(line + '\\n')\n"
        "    channel.flush()\n" + body
    )
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}"


def log_text(baton: Baton, experiment_id: int) -> str:
    reply = baton.http.get(f"/api/v1/experiments/{experiment_id}/logs", params={"offset": 0})
    assert reply.status_code == 200, reply.text
    text: str = reply.json()["text"]
    return text


def final(baton: Baton, experiment_id: int) -> dict[str, Any]:
    return baton.wait_status(experiment_id, "succeeded", "failed", "canceled", timeout=120)


def test_abusive_job_output_leaves_the_agent_up_and_working(
    baton_factory: Callable[..., Baton], tmp_path: Path
) -> None:
    baton = baton_factory(BATON_HEARTBEAT_SECONDS=str(HEARTBEAT), BATON_LEASE_SECONDS="6")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("not a checkpoint")

    garbage_lines = [
        "not json",
        '{"type":"progress","st',
        "[1, 2]",
        '{"type":"checkpoint","step":"x"}',
        '{"type":"checkpoint","step":3}',
        '{"type":"progress","step":-1}',
        '{"type":"progress","step":2,"metrics":[1,2]}',
        json.dumps({"type": "checkpoint", "step": 4, "dir": str(precious)}),
        '{"type":"progress","step":7,"total":10,"metrics":{"loss":0.5}}',
    ]
    garbage = baton.submit(
        name="garbage",
        kind="command",
        max_attempts=1,
        config={"command": job(f"for line in {garbage_lines!r}:\n    put(line)\n")},
    )
    flooded = baton.submit(
        name="flood",
        kind="command",
        max_attempts=1,
        config={
            "command": job(
                "metrics = {'loss': 0.25, 'nan': float('nan'), 'inf': float('inf')}\n"
                "metrics.update({f'm{i:05d}': float(i) for i in range(10_000)})\n"
                "put(json.dumps({'type': 'progress', 'step': 1, 'metrics': metrics}))\n"
                "put(json.dumps({'type': 'result', 'values': {'score': float('nan'), 'ok': 1}}))\n"
                # Running a few heartbeats on: capped metrics travel by heartbeat too.
                "time.sleep(3)\n"
            )
        },
    )
    huge = baton.submit(
        name="huge",
        kind="command",
        max_attempts=1,
        config={
            "command": job("put(json.dumps({'type': 'result', 'values': {'b': 'x' * 20_000_000}}))")
        },
    )
    worker = baton.start_worker("worker-a", "--platform", "local")

    body = final(baton, garbage)
    assert body["status"] == "succeeded", body
    attempt = body["attempts"][0]
    assert (attempt["progress_step"], attempt["progress_total"]) == (7, 10)
    assert attempt["metrics"] == {"loss": 0.5}
    assert body["checkpoint_step"] is None, "no checkpoint came from the bad messages"
    assert (precious / "keep.txt").read_text() == "not a checkpoint", "the agent left it alone"
    text = log_text(baton, garbage)
    for said in (
        "not a JSON line",
        "not a JSON object",
        "checkpoint message: step must be an integer from 0 to 2147483647, not 'x'",
        "checkpoint message: dir must be a path, not None",
        "progress message: step must be an integer from 0 to 2147483647 or null, not -1",
        "progress message: metrics must be an object, not [1, 2]",
        f"checkpoint message: dir '{precious}' is not inside",
    ):
        assert said in text, f"{said!r} not in the job's log:\n{text}"

    body = final(baton, flooded)
    assert body["status"] == "succeeded", body
    metrics = body["attempts"][0]["metrics"]
    assert len(metrics) == MAX_METRICS and metrics["loss"] == 0.25
    assert "nan" not in metrics and "inf" not in metrics
    assert body["result"] == {"score": None, "ok": 1}
    text = log_text(baton, flooded)
    assert f"metric names past the first {MAX_METRICS}" in text
    assert "'nan': nan is not a finite number" in text

    body = final(baton, huge)
    assert body["status"] == "failed", body
    assert f"over the limit of {MAX_RESULT_BYTES:,} bytes" in (body["error"] or ""), body["error"]
    assert body["result"] is None

    assert worker.alive(), worker.output()[-3000:]
    follow = baton.submit(name="next", kind="command", config={"command": "true"})
    body = final(baton, follow)
    assert body["status"] == "succeeded", body
    workers = {baton.get(i)["attempts"][0]["worker_id"] for i in (garbage, flooded, huge, follow)}
    assert len(workers) == 1, f"one worker ran every job: {workers}"
    assert worker.alive()
    assert "Traceback" not in worker.output(), worker.output()[-3000:]


def test_a_refused_heartbeat_ends_the_attempt_at_once(
    baton_factory: Callable[..., Baton], tmp_path: Path
) -> None:
    baton = baton_factory(BATON_HEARTBEAT_SECONDS=str(HEARTBEAT), BATON_LEASE_SECONDS="6")
    pidfile = tmp_path / "job.pid"
    baton.submit(
        name="sleeper", kind="command", config={"command": f"echo $$ > {pidfile}; exec sleep 300"}
    )
    worker = baton.start_worker("worker-a", "--platform", "local")
    pid = int(
        wait_until(
            lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=60, what="the job pid"
        )
    )
    (token,) = baton.http.get("/api/v1/worker-tokens").json()
    started = time.monotonic()
    assert baton.http.delete(f"/api/v1/worker-tokens/{token['id']}").status_code == 200
    wait_until(
        lambda: not process_alive(pid), timeout=HEARTBEAT + 10, interval=0.05, what="job stopped"
    )
    elapsed = time.monotonic() - started
    assert elapsed <= HEARTBEAT + 2, f"the job stopped {elapsed:.2f}s after its token was revoked"
    # The revoked worker cannot report, and then cannot claim: it exits saying why.
    assert worker.popen.wait(30) == 2
    assert "heartbeat refused" in worker.output()
    assert "worker token unknown or revoked" in worker.output()


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"result": {"blob": "x" * 9_000_000}}, "HTTP 413: request body over"),
        ({"metrics": {f"m{i}": 1.0 for i in range(MAX_METRICS + 1)}}, "HTTP 422"),
    ],
)
def test_a_refused_report_fails_the_attempt_with_the_servers_answer(
    baton_factory: Callable[..., Baton], fields: dict[str, Any], says: str
) -> None:
    baton = baton_factory()
    experiment_id = baton.submit(
        name="reported", kind="command", max_attempts=1, config={"command": "true"}
    )
    client = WorkerClient(baton.stack.url, baton.worker_token)
    stop = threading.Event()
    try:
        worker_id = client.register({"name": "by-hand", "platform": "local"}, stop=stop)["id"]
        grant = client.claim(worker_id, wait=10, stop=stop)
        assert grant is not None and grant["experiment_id"] == experiment_id
        report(client, "complete", {"lease_token": grant["lease_token"], **fields}, give_up=stop)
    finally:
        client.close()
    body = baton.get(experiment_id)
    assert body["status"] == "failed", body
    assert body["attempts"][0]["outcome"] == "failed"
    assert (body["error"] or "").startswith("the control plane refused the worker's complete")
    assert says in body["error"], body["error"]
