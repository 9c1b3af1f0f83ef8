"""GPU time from heartbeats, per worker, platform account and week; utilization."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from orchestrator.services.usage import iso_week, split_by_week, week_bounds
from orchestrator.settings import Settings
from tests.support.api import create_user, create_worker_token, login
from tests.support.experiments import submit
from tests.support.workers import claim, finish, register


def test_weeks() -> None:
    assert iso_week(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-W01"
    assert week_bounds("2026-W01")[0] == datetime(2025, 12, 29, tzinfo=UTC)
    sunday_night = datetime(2026, 1, 4, 23, 0, tzinfo=UTC)
    monday = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
    assert list(split_by_week(sunday_night, monday)) == [("2026-W01", 3600.0), ("2026-W02", 3600.0)]


def _hours(seconds: float) -> float:
    return seconds / 3600


def test_busy_time_from_heartbeats_and_utilization(client: TestClient, settings: Settings) -> None:
    create_user(settings, "u@example.com")
    user = login(client, "u@example.com")
    token = create_worker_token(settings)
    auth = {"Authorization": f"Bearer {token}"}
    busy_worker = register(
        client,
        token,
        name="t4",
        platform="kaggle",
        account="alice",
        gpu_count=2,
        gpu_memory_mb=15360,
    )
    register(client, token, name="idle", platform="colab", gpu_count=1)
    submit(client, user, "job", resources={"gpu": True})
    grant = claim(client, token, busy_worker)
    assert grant is not None
    time.sleep(1.0)
    reply = client.post(
        "/api/v1/leases/heartbeat", json={"lease_token": grant["lease_token"]}, headers=auth
    )
    assert reply.status_code == 200
    time.sleep(0.5)
    finish(client, token, "complete", grant, result={})

    report = client.get("/api/v1/platforms/usage", headers=user).json()
    assert report["week"] == iso_week(datetime.now(UTC))
    workers = {w["name"]: w for w in report["workers"]}
    t4, idle = workers["t4"], workers["idle"]
    assert _hours(1.5) <= t4["busy_hours"] < _hours(3)
    assert t4["connected_hours"] >= t4["busy_hours"]
    assert 0.5 < t4["utilization"] <= 1
    assert idle["busy_hours"] == 0 and idle["utilization"] in (0, None)

    kaggle = next(p for p in report["platforms"] if p["platform"] == "kaggle")
    assert kaggle["account"] == "alice" and kaggle["source"] == "baton"
    assert kaggle["busy_gpu_hours"] == pytest.approx(2 * t4["busy_hours"], abs=1e-5)
    assert kaggle["gpu_hours_allowed"] == 30 and kaggle["resets_at"] == report["week_end"]
    colab = next(p for p in report["platforms"] if p["platform"] == "colab")
    assert colab["gpu_hours_allowed"] is None
    overall = report["overall"]
    assert overall["busy_gpu_hours"] == pytest.approx(kaggle["busy_gpu_hours"], abs=1e-5)
    assert 0 < overall["utilization"] <= 1

    # Another week holds nothing; a malformed one is refused.
    empty = client.get("/api/v1/platforms/usage", params={"week": "2020-W01"}, headers=user).json()
    assert empty["workers"] == [] and empty["overall"]["utilization"] is None
    bad = client.get("/api/v1/platforms/usage", params={"week": "2020-W99"}, headers=user)
    assert bad.status_code == 422
    assert client.get("/api/v1/platforms/usage").status_code == 401


def test_worker_reports_platform_account_and_session(
    client: TestClient, settings: Settings
) -> None:
    create_user(settings, "u@example.com")
    user = login(client, "u@example.com")
    token = create_worker_token(settings)
    register(
        client,
        token,
        platform="kaggle",
        account="alice",
        session_started_at="2026-01-01T00:00:00Z",
        session_deadline="2026-01-01T09:00:00Z",
    )
    (worker,) = client.get("/api/v1/workers", headers=user).json()
    assert worker["platform"] == "kaggle" and worker["account"] == "alice"
    assert worker["session_started_at"].startswith("2026-01-01T00:00:00")
    assert worker["session_deadline"].startswith("2026-01-01T09:00:00")
