"""Submit experiments through the API and look at what really got stored and queued."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import func
from sqlmodel import Session, select

from orchestrator.db import make_engine
from orchestrator.dispatch import Dispatcher
from orchestrator.models import Experiment, ExperimentTag
from orchestrator.settings import Settings


def submit(client: TestClient, headers: dict[str, str], name: str = "exp", **fields: Any) -> int:
    body = {"name": name, "kind": "command", "config": {"command": "true"}, **fields}
    response = client.post("/api/v1/experiments", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def stored_rows(settings: Settings) -> dict[str, int]:
    """Row counts straight from the database, bypassing the API's own view."""
    engine = make_engine(settings.resolved_database_url)
    try:
        with Session(engine) as session:
            return {
                "experiment": session.exec(select(func.count()).select_from(Experiment)).one(),
                "experiment_tag": session.exec(
                    select(func.count()).select_from(ExperimentTag)
                ).one(),
            }
    finally:
        engine.dispose()


def ready_members(settings: Settings) -> dict[int, str]:
    """Experiment id -> capability class, for everything in a Redis ready set."""
    redis = Redis.from_url(settings.redis_url)
    try:
        return {i: q.class_name for i, q in Dispatcher(redis).ready_members().items()}
    finally:
        redis.close()


def ready_keys(settings: Settings) -> list[bytes]:
    """Every ready-set key, also those missing from ``baton:queues``."""
    redis = Redis.from_url(settings.redis_url)
    try:
        return list(redis.scan_iter(match="baton:ready:*"))
    finally:
        redis.close()
