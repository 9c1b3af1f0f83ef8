from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, MetaData, text

from orchestrator.app import create_app
from orchestrator.db import make_engine
from orchestrator.migrate import upgrade
from orchestrator.settings import Settings
from tests.support.api import make_settings
from tests.support.services import (
    CLAIM_KEY,
    PostgresService,
    RedisService,
    postgres_service,
    redis_service,
)

_used: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for name, how in sorted(_used.items()):
        terminalreporter.write_line(f"{name}: {how}")


@pytest.fixture(scope="session")
def redis_svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisService]:
    with redis_service(tmp_path_factory.mktemp("redis")) as svc:
        _used["redis"] = svc.how
        yield svc


@pytest.fixture(scope="session")
def pg_svc() -> Iterator[PostgresService | None]:
    with postgres_service() as svc:
        _used["postgres"] = svc.how if svc else "unavailable: Postgres-parametrised tests skipped"
        yield svc


@pytest.fixture
def redis_url(redis_svc: RedisService) -> Iterator[str]:
    """The run's Redis DB, empty at the start of each test."""
    token = redis_svc.client.get(CLAIM_KEY)
    redis_svc.client.flushdb()
    if token is not None:
        redis_svc.client.set(CLAIM_KEY, token, ex=6 * 3600)
    yield redis_svc.url


_pg_migrated: dict[str, Engine] = {}


def _truncate_all(engine: Engine) -> None:
    meta = MetaData()
    meta.reflect(engine)
    names = ", ".join(f'"{t.name}"' for t in meta.sorted_tables if t.name != "alembic_version")
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each DB test runs on SQLite and on the local Postgres (migrated once, emptied per test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'baton.db'}"
        return
    svc: PostgresService | None = request.getfixturevalue("pg_svc")
    if svc is None:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432 and none could be started")
    if svc.url not in _pg_migrated:
        engine = make_engine(svc.url)
        upgrade(engine)
        _pg_migrated[svc.url] = engine
    yield svc.url
    _truncate_all(_pg_migrated[svc.url])


@pytest.fixture(scope="session", autouse=True)
def _dispose_pg_engines() -> Iterator[None]:
    yield
    for engine in _pg_migrated.values():
        engine.dispose()


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url=database_url, redis_url=redis_url, data_dir=tmp_path / "data")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The real app (real DB, real Redis) in-process; the lifespan migrates and reconciles."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client
