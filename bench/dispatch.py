"""Dispatch benchmark: the real HTTP API beside the raw Redis claim rate, in one run.

Starts `python -m orchestrator serve` and `python -m orchestrator rq-worker` as subprocesses
on a scratch database (a SQLite file, or with --database postgres a database
`baton_bench_<pid>` created on 127.0.0.1:5432) and a free Redis DB, then measures:

1. Redis baseline: `Dispatcher.enqueue` of --baseline-members members, then `Dispatcher.claim`
   in a loop until empty: one client, then --workers threads sharing one client (as the API's
   threadpool shares its connection pool). No HTTP, no database.
2. Submit: --experiments experiments (kind `command`, `true`) over POST /api/v1/experiments,
   from --submitters concurrent clients.
3. Ready backlog: --workers simulated workers (asyncio + httpx, one connection each) loop
   claim?wait=5 -> complete until every experiment is completed.
   latency = grant received - claim request sent, over the claims that returned a grant.
4. Idle workers: the workers long-poll an empty queue while --idle-experiments experiments are
   submitted one every --idle-interval-ms. Two latencies per experiment:
   queued -> grant = grant received - the experiment's `updated_at` from the submit reply
   (the API writes it inside the submitting transaction, just before COMMIT; same host, same
   wall clock), and sent -> grant = grant received - submit request sent.

Percentiles are nearest-rank. Everything started or created is removed on exit, error, Ctrl-C
and SIGTERM.

    .venv/bin/python bench/dispatch.py                       # SQLite
    .venv/bin/python bench/dispatch.py --database postgres
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import math
import os
import platform
import secrets
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from redis import Redis
from sqlalchemy import text
from sqlmodel import Session

# The orchestrator of this checkout, not whichever one the venv was installed from: the bench
# and the processes it starts (cwd and PYTHONPATH below) must all run the same code.
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orchestrator.db import commit, make_engine  # noqa: E402
from orchestrator.dispatch import (  # noqa: E402
    Capability,
    Dispatcher,
    Lane,
    Requirement,
    lanes_served,
)
from orchestrator.dispatch.queue import now_ms  # noqa: E402
from orchestrator.migrate import upgrade  # noqa: E402
from orchestrator.models import Role  # noqa: E402
from orchestrator.models.user import UserCreate  # noqa: E402
from orchestrator.services import accounts  # noqa: E402

REDIS_DEFAULT = "redis://127.0.0.1:6379"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# Marks a Redis DB as ours, so concurrent benches and test runs pick different DBs.
CLAIM_KEY = "baton-bench:claimed-by"
CLAIM_TTL_S = 3600
ADMIN_EMAIL = "bench@example.com"
ADMIN_PASSWORD = "bench-password-123"
PHASE_TIMEOUT_S = 600.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
# uvicorn closes a keep-alive connection after 5 s idle and httpx reuses one for up to 5 s: a
# request sent on a ~5 s idle connection can meet the close ("Server disconnected without
# sending a response"). Expiring ours sooner keeps that race out of the numbers.
LIMITS = httpx.Limits(keepalive_expiry=2.0)


# --- small helpers ------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _interrupt(signum: int, _frame: object) -> None:
    # SIGTERM takes the same path as Ctrl-C, so every cleanup in the ExitStack runs.
    raise KeyboardInterrupt(f"signal {signum}")


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL if the bench dies without cleaning up (kill -9)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def proc_cpu_s(pid: int) -> float:
    """utime + stime of one process, from /proc (0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all cores, to get the machine's busy share over a phase."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


# --- scratch resources --------------------------------------------------------------------


def _reset_redis(client: Redis, token: str) -> None:
    # FLUSHDB and re-claiming in one MULTI: the DB is never seen empty (free) by others.
    pipe = client.pipeline(transaction=True)
    pipe.flushdb()
    pipe.set(CLAIM_KEY, token, ex=CLAIM_TTL_S)
    pipe.execute()


@contextlib.contextmanager
def scratch_redis(url: str | None, token: str) -> Iterator[str]:
    """A Redis DB only this run uses, flushed at the end: --redis-url (must be empty) or the
    first empty DB 1-15 on 127.0.0.1:6379 (DB 0 is left to people)."""
    candidates = [url] if url else [f"{REDIS_DEFAULT}/{db}" for db in range(1, 16)]
    for candidate in candidates:
        client = Redis.from_url(candidate)
        if client.dbsize() == 0 and client.set(CLAIM_KEY, token, nx=True, ex=CLAIM_TTL_S):
            try:
                yield candidate
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    raise SystemExit(f"no empty Redis DB among {candidates}: pass an empty one with --redis-url")


@contextlib.contextmanager
def scratch_postgres() -> Iterator[str]:
    name = f"baton_bench_{os.getpid()}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        # rq-worker forks job processes into the group we created for it: none may outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@contextlib.contextmanager
def child(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Iterator[Child]:
    log = log_dir / f"{name}.log"
    with log.open("ab") as out:
        # Own session: a terminal Ctrl-C reaches only the bench, which then stops us in order.
        popen = subprocess.Popen(
            argv,
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    proc = Child(name, popen, log)
    try:
        yield proc
    except Exception:
        # The log is in a temporary dir about to be removed: show why the run failed.
        print(f"--- last lines of {name}.log ---\n{proc.tail()}", file=sys.stderr)
        raise
    finally:
        proc.stop()


def stack_env(*, database_url: str, redis_url: str, data_dir: Path, secret: str) -> dict[str, str]:
    return {
        **os.environ,
        "BATON_ENV": "test",
        "BATON_SECRET_KEY": secret,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BATON_DATA_DIR": str(data_dir),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
    }


def bootstrap(database_url: str) -> str:
    """Schema, admin user and worker token straight through the services; returns the token."""
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with Session(engine) as session:
            admin = UserCreate(email=ADMIN_EMAIL, password=ADMIN_PASSWORD, role=Role.admin)
            owner = accounts.create_user(session, data=admin)
            _, worker_token = accounts.create_worker_token(session, name="bench", owner=owner)
            commit(session)
    finally:
        engine.dispose()
    return worker_token


def wait_healthy(base: str, api: Child, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if api.popen.poll() is not None:
            raise RuntimeError(f"the API exited:\n{api.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the API did not answer /healthz in {timeout}s:\n{api.tail()}")


def login(base: str) -> dict[str, str]:
    reply = httpx.post(
        f"{base}/auth/login", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}, timeout=30
    )
    reply.raise_for_status()
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


# --- CPU accounting per phase -------------------------------------------------------------


@dataclass
class CpuWatch:
    """CPU used during a phase by the API process, the bench itself, and the whole machine."""

    api_pid: int
    start: dict[str, float] = field(default_factory=dict)

    def _sample(self) -> dict[str, float]:
        busy, total = machine_cpu()
        return {
            "api": proc_cpu_s(self.api_pid),
            "bench": time.process_time(),
            "busy": busy,
            "total": total,
            "wall": time.perf_counter(),
        }

    def begin(self) -> None:
        self.start = self._sample()

    def end(self) -> dict[str, float]:
        now = self._sample()
        wall = now["wall"] - self.start["wall"]
        return {
            "api_core_pct": 100 * (now["api"] - self.start["api"]) / wall,
            "bench_core_pct": 100 * (now["bench"] - self.start["bench"]) / wall,
            "machine_busy_pct": 100
            * (now["busy"] - self.start["busy"])
            / max(1.0, now["total"] - self.start["total"]),
        }


# --- 1. Redis baseline --------------------------------------------------------------------


@dataclass
class BaselineResult:
    members: int
    enqueue_per_s: float
    claim_1_per_s: float
    claim_1_p50_ms: float
    claim_1_p99_ms: float
    threads: int
    claim_n_per_s: float


# The baseline's experiments all belong to one user, whose own workers claim them.
LANE = Lane(owner_id=1)
LANES = lanes_served(1, ())


def _fill(dispatcher: Dispatcher, members: int) -> float:
    requirement, base = Requirement(), now_ms()
    start = time.perf_counter()
    for member in range(1, members + 1):
        dispatcher.enqueue(
            experiment_id=member,
            requirement=requirement,
            lane=LANE,
            priority=0,
            queued_at_ms=base + member,
        )
    return members / (time.perf_counter() - start)


def _drain_single(dispatcher: Dispatcher) -> tuple[int, float, list[float]]:
    latencies: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        if (
            dispatcher.claim(capability=Capability(), lanes=LANES, worker_id=1, lease_ms=30_000)
            is None
        ):
            break
        latencies.append(time.perf_counter() - t0)
    return len(latencies), time.perf_counter() - start, latencies


def _drain_threads(dispatcher: Dispatcher, threads: int) -> tuple[int, float]:
    counts = [0] * threads
    go = threading.Event()

    def drain(index: int) -> None:
        go.wait()
        while dispatcher.claim(
            capability=Capability(), lanes=LANES, worker_id=index, lease_ms=30_000
        ):
            counts[index] += 1

    pool = [threading.Thread(target=drain, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    start = time.perf_counter()
    go.set()
    for thread in pool:
        thread.join()
    return sum(counts), time.perf_counter() - start


def redis_baseline(redis_url: str, token: str, members: int, threads: int) -> BaselineResult:
    client = Redis.from_url(redis_url)
    dispatcher = Dispatcher(client)
    try:
        enqueue_rate = _fill(dispatcher, members)
        claimed, seconds, latencies = _drain_single(dispatcher)
        assert claimed == members, f"single client claimed {claimed} of {members}"
        _reset_redis(client, token)
        _fill(dispatcher, members)
        claimed_n, seconds_n = _drain_threads(dispatcher, threads)
        assert claimed_n == members, f"{threads} threads claimed {claimed_n} of {members}"
    finally:
        _reset_redis(client, token)
        client.close()
    return BaselineResult(
        members=members,
        enqueue_per_s=enqueue_rate,
        claim_1_per_s=claimed / seconds,
        claim_1_p50_ms=1000 * percentile(latencies, 50),
        claim_1_p99_ms=1000 * percentile(latencies, 99),
        threads=threads,
        claim_n_per_s=claimed_n / seconds_n,
    )


# --- HTTP calls ---------------------------------------------------------------------------


async def submit(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    reply = await client.post(
        "/api/v1/experiments", json={"name": name, "kind": "command", "config": {"command": "true"}}
    )
    reply.raise_for_status()
    body: dict[str, Any] = reply.json()
    return body


async def claim(client: httpx.AsyncClient, worker_id: int, wait: float) -> dict[str, Any] | None:
    reply = await client.post(f"/api/v1/workers/{worker_id}/claim", params={"wait": wait})
    if reply.status_code == 204:
        return None
    reply.raise_for_status()
    grant: dict[str, Any] = reply.json()
    return grant


async def complete(client: httpx.AsyncClient, lease_token: str) -> None:
    reply = await client.post(
        "/api/v1/leases/complete", json={"lease_token": lease_token, "result": {}}
    )
    reply.raise_for_status()


async def register(client: httpx.AsyncClient, index: int) -> int:
    reply = await client.post(
        "/api/v1/workers/register",
        json={"name": f"bench-{index}", "platform": "local", "hostname": "bench"},
    )
    reply.raise_for_status()
    return int(reply.json()["id"])


@dataclass
class Fleet:
    """One client (one keep-alive connection) per simulated worker, like separate machines."""

    ids: list[int]
    clients: list[httpx.AsyncClient]


async def open_fleet(base: str, worker_token: str, size: int, wait: float) -> Fleet:
    clients = [
        httpx.AsyncClient(
            base_url=base,
            headers={"Authorization": f"Bearer {worker_token}"},
            timeout=httpx.Timeout(wait + 60),
            limits=LIMITS,
        )
        for _ in range(size)
    ]
    ids = [await register(c, i) for i, c in enumerate(clients)]
    return Fleet(ids=ids, clients=clients)


WorkerLoop = Callable[[httpx.AsyncClient, int], Awaitable[None]]


async def run_fleet(fleet: Fleet, loop: WorkerLoop) -> None:
    # TaskGroup: one failing worker cancels the rest instead of leaving them polling.
    async with asyncio.timeout(PHASE_TIMEOUT_S), asyncio.TaskGroup() as group:
        for client, worker_id in zip(fleet.clients, fleet.ids, strict=True):
            group.create_task(loop(client, worker_id))


# --- 2. submit ----------------------------------------------------------------------------


@dataclass
class SubmitResult:
    count: int
    concurrency: int
    per_s: float
    p50_ms: float
    p99_ms: float
    cpu: dict[str, float]


async def submit_phase(
    client: httpx.AsyncClient, count: int, concurrency: int, cpu: CpuWatch
) -> SubmitResult:
    names = iter(range(count))
    latencies: list[float] = []

    async def submitter() -> None:
        # One shared iterator: each submitter takes the next index as soon as it is free.
        for index in names:
            t0 = time.perf_counter()
            await submit(client, f"backlog-{index}")
            latencies.append(time.perf_counter() - t0)

    cpu.begin()
    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(submitter())
    seconds = time.perf_counter() - start
    cpu_used = cpu.end()
    return SubmitResult(
        count=count,
        concurrency=concurrency,
        per_s=count / seconds,
        p50_ms=1000 * percentile(latencies, 50),
        p99_ms=1000 * percentile(latencies, 99),
        cpu=cpu_used,
    )


# --- 3. ready backlog ---------------------------------------------------------------------


@dataclass
class BacklogResult:
    completed: int
    seconds: float
    claims_per_s: float
    claim_p50_ms: float
    claim_p99_ms: float
    complete_p50_ms: float
    complete_p99_ms: float
    empty_polls: int
    cpu: dict[str, float]


async def backlog_phase(fleet: Fleet, target: int, wait: float, cpu: CpuWatch) -> BacklogResult:
    granted = completed = empty = 0
    claim_s: list[float] = []
    complete_s: list[float] = []
    cpu_used: dict[str, float] = {}
    cpu.begin()
    start = time.perf_counter()
    finished = start

    async def worker(client: httpx.AsyncClient, worker_id: int) -> None:
        nonlocal granted, completed, empty, finished
        # Stop once everything was granted; a claim already waiting on the empty queue returns
        # 204 after `wait` (it is not cancelled: a dropped long-poll can still take work).
        while granted < target:
            t0 = time.perf_counter()
            grant = await claim(client, worker_id, wait)
            t1 = time.perf_counter()
            if grant is None:
                empty += 1
                continue
            granted += 1
            await complete(client, grant["lease_token"])
            t2 = time.perf_counter()
            claim_s.append(t1 - t0)
            complete_s.append(t2 - t1)
            completed += 1
            finished = t2
            if completed == target:
                # CPU up to the last completion, not over the idle long-polls that follow.
                cpu_used.update(cpu.end())

    await run_fleet(fleet, worker)
    seconds = finished - start
    return BacklogResult(
        completed=completed,
        seconds=seconds,
        claims_per_s=completed / seconds,
        claim_p50_ms=1000 * percentile(claim_s, 50),
        claim_p99_ms=1000 * percentile(claim_s, 99),
        complete_p50_ms=1000 * percentile(complete_s, 50),
        complete_p99_ms=1000 * percentile(complete_s, 99),
        empty_polls=empty,
        cpu=cpu_used,
    )


# --- 4. idle workers ----------------------------------------------------------------------


@dataclass
class IdleResult:
    count: int
    interval_ms: float
    queued_p50_ms: float
    queued_p99_ms: float
    sent_p50_ms: float
    sent_p99_ms: float
    submit_p50_ms: float
    submit_p99_ms: float
    cpu: dict[str, float]


@dataclass
class IdleState:
    target: int
    cpu: CpuWatch
    cpu_used: dict[str, float] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    completed: int = 0
    grants: dict[int, float] = field(default_factory=dict)  # experiment id -> wall time
    submits: dict[int, tuple[float, float, float]] = field(default_factory=dict)


async def _paced_submits(client: httpx.AsyncClient, state: IdleState, interval: float) -> None:
    start = time.perf_counter()
    for index in range(state.target):
        # Fixed schedule (not sleep-after-submit), so a slow submit does not lower the rate.
        delay = start + index * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent, t0 = time.time(), time.perf_counter()
        body = await submit(client, f"idle-{index}")
        queued_at = datetime.fromisoformat(body["updated_at"]).timestamp()
        state.submits[int(body["id"])] = (sent, queued_at, time.perf_counter() - t0)


def _idle_result(state: IdleState, interval: float) -> IdleResult:
    missing = set(state.submits) - set(state.grants)
    assert not missing, f"never granted: {sorted(missing)[:10]}"
    queued = [state.grants[i] - s[1] for i, s in state.submits.items()]
    sent = [state.grants[i] - s[0] for i, s in state.submits.items()]
    submit_s = [s[2] for s in state.submits.values()]
    return IdleResult(
        count=len(state.submits),
        interval_ms=1000 * interval,
        queued_p50_ms=1000 * percentile(queued, 50),
        queued_p99_ms=1000 * percentile(queued, 99),
        sent_p50_ms=1000 * percentile(sent, 50),
        sent_p99_ms=1000 * percentile(sent, 99),
        submit_p50_ms=1000 * percentile(submit_s, 50),
        submit_p99_ms=1000 * percentile(submit_s, 99),
        cpu=state.cpu_used,
    )


async def idle_phase(
    fleet: Fleet,
    user_client: httpx.AsyncClient,
    count: int,
    interval: float,
    wait: float,
    cpu: CpuWatch,
) -> IdleResult:
    state = IdleState(target=count, cpu=cpu)

    async def worker(client: httpx.AsyncClient, worker_id: int) -> None:
        while not state.done.is_set():
            grant = await claim(client, worker_id, wait)
            if grant is None:
                continue
            # Before complete(): the grant is what the latency ends at.
            state.grants[int(grant["experiment_id"])] = time.time()
            await complete(client, grant["lease_token"])
            state.completed += 1
            if state.completed == state.target:
                state.cpu_used.update(state.cpu.end())
                state.done.set()

    async def submitter() -> None:
        # Let every worker reach its long-poll first, so the queue is drained by wake-ups.
        await asyncio.sleep(1.0)
        cpu.begin()
        await _paced_submits(user_client, state, interval)

    async with asyncio.timeout(PHASE_TIMEOUT_S), asyncio.TaskGroup() as group:
        group.create_task(run_fleet(fleet, worker))
        group.create_task(submitter())
    return _idle_result(state, interval)


# --- the run ------------------------------------------------------------------------------


@dataclass
class Options:
    experiments: int
    workers: int
    database: str
    port: int
    redis_url: str | None
    submitters: int
    idle_experiments: int
    idle_interval_ms: float
    baseline_members: int
    claim_wait: float
    json_out: Path | None


@dataclass
class Results:
    options: dict[str, Any]
    environment: dict[str, Any]
    baseline: BaselineResult | None = None
    submit: SubmitResult | None = None
    backlog: BacklogResult | None = None
    idle: IdleResult | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    attempts: int = 0


async def http_phases(
    opts: Options, base: str, worker_token: str, cpu: CpuWatch, res: Results
) -> None:
    user = httpx.AsyncClient(base_url=base, headers=login(base), timeout=60, limits=LIMITS)
    fleet = await open_fleet(base, worker_token, opts.workers, opts.claim_wait)
    try:
        res.submit = await submit_phase(user, opts.experiments, opts.submitters, cpu)
        res.backlog = await backlog_phase(fleet, opts.experiments, opts.claim_wait, cpu)
        res.idle = await idle_phase(
            fleet, user, opts.idle_experiments, opts.idle_interval_ms / 1000, opts.claim_wait, cpu
        )
    finally:
        for client in [user, *fleet.clients]:
            await client.aclose()


def tally(database_url: str, res: Results) -> None:
    """What the database says happened: every experiment succeeded, one attempt each."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT status, count(*) FROM experiment GROUP BY status"))
            res.statuses = {str(status): int(n) for status, n in rows}
            res.attempts = int(conn.execute(text("SELECT count(*) FROM attempt")).scalar_one())
    finally:
        engine.dispose()


def server_versions(database_url: str, redis_url: str) -> dict[str, str]:
    with Redis.from_url(redis_url) as client:
        redis_version = str(client.info("server").get("redis_version"))
    if database_url.startswith("sqlite"):
        db_version = f"SQLite {sqlite3.sqlite_version}"
    else:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            db_version = f"PostgreSQL {row[0] if row else '?'}"
    return {"redis": redis_version, "database": db_version}


def environment() -> dict[str, Any]:
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model,
        "python": platform.python_version(),
        "load_avg_start": os.getloadavg(),
    }


def run(opts: Options, res: Results) -> None:
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    with contextlib.ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="baton-bench-")))
        redis_url = stack.enter_context(scratch_redis(opts.redis_url, token))
        res.environment["redis_url"] = redis_url
        # Baseline first, on the same scratch DB, while none of our processes use the CPU.
        res.baseline = redis_baseline(redis_url, token, opts.baseline_members, opts.workers)
        if opts.database == "postgres":
            database_url = stack.enter_context(scratch_postgres())
        else:
            database_url = f"sqlite:///{data_dir / 'baton.db'}"
        res.environment.update(server_versions(database_url, redis_url))
        worker_token = bootstrap(database_url)
        env = stack_env(
            database_url=database_url,
            redis_url=redis_url,
            data_dir=data_dir,
            secret=secrets.token_urlsafe(48),
        )
        port = opts.port or free_port()
        python = sys.executable
        serve = [python, "-m", "orchestrator", "serve", "--host", "127.0.0.1", "--port", str(port)]
        api = stack.enter_context(child("api", serve, env, data_dir))
        rq_worker = [python, "-m", "orchestrator", "rq-worker"]
        stack.enter_context(child("rq-worker", rq_worker, env, data_dir))
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, api)
        asyncio.run(http_phases(opts, base, worker_token, CpuWatch(api.popen.pid), res))
        tally(database_url, res)
    res.environment["load_avg_end"] = os.getloadavg()


# --- report -------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"


def _cpu(c: dict[str, float]) -> str:
    if not c:
        return ""
    return (
        f"API process {c['api_core_pct']:.0f}% of a core, bench client {c['bench_core_pct']:.0f}%, "
        f"machine {c['machine_busy_pct']:.0f}% busy"
    )


def table(res: Results) -> str:
    b, s, k, i = res.baseline, res.submit, res.backlog, res.idle
    assert b and s and k and i
    ratio = b.claim_n_per_s / k.claims_per_s
    rows = [
        (
            "Redis baseline: enqueue (1 client)",
            f"{b.enqueue_per_s:,.0f} /s",
            f"{b.members:,} members",
        ),
        (
            "Redis baseline: claim (1 client)",
            f"{b.claim_1_per_s:,.0f} claims/s",
            f"p50 {_ms(b.claim_1_p50_ms)}, p99 {_ms(b.claim_1_p99_ms)}",
        ),
        (
            f"Redis baseline: claim ({b.threads} threads)",
            f"{b.claim_n_per_s:,.0f} claims/s",
            "one shared client, as in the API",
        ),
        (
            f"HTTP submit ({s.concurrency} concurrent)",
            f"{s.per_s:,.0f} experiments/s",
            f"p50 {_ms(s.p50_ms)}, p99 {_ms(s.p99_ms)}; {_cpu(s.cpu)}",
        ),
        (
            f"HTTP ready backlog ({res.options['workers']} workers)",
            f"{k.claims_per_s:,.0f} claims/s",
            f"{k.completed:,} claim+complete cycles in {k.seconds:.1f} s; "
            f"{ratio:,.0f}x below Redis; {_cpu(k.cpu)}",
        ),
        (
            "backlog: claim sent -> grant received",
            f"p50 {_ms(k.claim_p50_ms)}",
            f"p99 {_ms(k.claim_p99_ms)}",
        ),
        (
            "backlog: complete round trip",
            f"p50 {_ms(k.complete_p50_ms)}",
            f"p99 {_ms(k.complete_p99_ms)}; {k.empty_polls} empty (204) claims",
        ),
        (
            f"idle workers: queued (pre-commit) -> grant, 1 per {i.interval_ms:.0f} ms",
            f"p50 {_ms(i.queued_p50_ms)}",
            f"p99 {_ms(i.queued_p99_ms)}; {i.count} experiments",
        ),
        (
            "idle workers: submit sent -> grant",
            f"p50 {_ms(i.sent_p50_ms)}",
            f"p99 {_ms(i.sent_p99_ms)}; submit round trip p50 {_ms(i.submit_p50_ms)}, "
            f"p99 {_ms(i.submit_p99_ms)}; {_cpu(i.cpu)}",
        ),
    ]
    lines = ["| measurement | result | detail |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b_} | {c} |" for a, b_, c in rows]
    return "\n".join(lines)


def report(res: Results) -> str:
    env = res.environment
    load = " / ".join(
        f"{a:.2f}, {b:.2f}, {c:.2f}" for a, b, c in (env["load_avg_start"], env["load_avg_end"])
    )
    return "\n".join(
        [
            f"## Dispatch, {res.options['database']} ({env['database']}, Redis {env['redis']})",
            "",
            f"command: `{shlex.join(sys.orig_argv)}`",
            f"machine: {env['cores']} cores ({env['cpu']}), shared; "
            f"load average start / end: {load}; Python {env['python']}",
            f"database check: statuses {res.statuses}, {res.attempts} attempts",
            "",
            table(res),
        ]
    )


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--experiments", type=int, default=1000, help="backlog size (default 1000)")
    p.add_argument("--workers", type=int, default=8, help="simulated workers (default 8)")
    p.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    p.add_argument("--redis-url", help="an empty Redis DB to use (default: a free DB 1-15)")
    p.add_argument("--submitters", type=int, default=8, help="concurrent submit clients")
    p.add_argument("--idle-experiments", type=int, default=200)
    p.add_argument("--idle-interval-ms", type=float, default=20.0)
    p.add_argument("--baseline-members", type=int, default=10_000)
    p.add_argument("--claim-wait", type=float, default=5.0, help="claim long-poll seconds")
    p.add_argument("--json", dest="json_out", type=Path, help="also write the results here")
    a = p.parse_args(argv)
    return Options(**vars(a))


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    options = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()}
    res = Results(options=options, environment=environment())
    try:
        run(opts, res)
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped and removed", file=sys.stderr)
        return 130
    print(report(res))
    if opts.json_out:
        opts.json_out.write_text(json.dumps(asdict(res), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
