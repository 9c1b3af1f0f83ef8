"""Dispatch through the real API, on SQLite and Postgres, with real Redis."""

from __future__ import annotations

from fastapi.testclient import TestClient

from orchestrator.settings import Settings
from tests.support.api import create_user, create_worker_token, login
from tests.support.experiments import submit as _submit
from tests.support.workers import claim as _claim
from tests.support.workers import register as _register


def test_priority_then_age(client: TestClient, settings: Settings) -> None:
    create_user(settings, "u@example.com")
    user = login(client, "u@example.com")
    token = create_worker_token(settings)
    old_low = _submit(client, user, "old-low", priority=1)
    _submit(client, user, "newer-low", priority=1)
    high = _submit(client, user, "high", priority=50)
    worker = _register(client, token)
    first = _claim(client, token, worker)
    second = _claim(client, token, worker)
    assert first is not None and first["experiment_id"] == high
    assert second is not None and second["experiment_id"] == old_low


def test_capability_routing(client: TestClient, settings: Settings) -> None:
    create_user(settings, "u@example.com")
    user = login(client, "u@example.com")
    token = create_worker_token(settings)
    big = _submit(client, user, "needs-24gb", resources={"gpu": True, "min_gpu_memory_gb": 24})
    gpu = _submit(client, user, "needs-gpu", resources={"gpu": True})
    cpu_worker = _register(client, token, gpu_count=0)
    small_gpu = _register(client, token, gpu_count=1, gpu_memory_mb=16 * 1024, gpu_name="T4")
    big_gpu = _register(client, token, gpu_count=1, gpu_memory_mb=80 * 1024, gpu_name="A100")

    assert _claim(client, token, cpu_worker) is None, "a CPU-only worker must never get a GPU job"
    got = _claim(client, token, small_gpu)
    assert got is not None and got["experiment_id"] == gpu
    assert _claim(client, token, small_gpu) is None, "a 16 GB worker must never get a 24 GB job"
    got = _claim(client, token, big_gpu)
    assert got is not None and got["experiment_id"] == big


def test_stale_token_is_refused_and_changes_nothing(client: TestClient, settings: Settings) -> None:
    create_user(settings, "u@example.com")
    user = login(client, "u@example.com")
    token = create_worker_token(settings)
    auth = {"Authorization": f"Bearer {token}"}
    exp = _submit(client, user, "x")
    worker = _register(client, token)
    grant = _claim(client, token, worker)
    assert grant is not None
    # The worker gives the lease back (preempted); a second claim gets a new token.
    released = client.post(
        "/api/v1/leases/release", json={"lease_token": grant["lease_token"]}, headers=auth
    )
    assert released.status_code == 200, released.text
    again = _claim(client, token, worker)
    assert again is not None and again["experiment_id"] == exp and again["attempt"] == 2
    for verb in ("complete", "fail", "heartbeat", "release"):
        late = client.post(
            f"/api/v1/leases/{verb}", json={"lease_token": grant["lease_token"]}, headers=auth
        )
        assert late.status_code == 409, (verb, late.text)
    body = client.get(f"/api/v1/experiments/{exp}", headers=user).json()
    assert body["status"] == "running"
    assert [a["outcome"] for a in body["attempts"]] == ["preempted", None]
    done = client.post(
        "/api/v1/leases/complete",
        json={"lease_token": again["lease_token"], "result": {"ok": 1}},
        headers=auth,
    )
    assert done.status_code == 200
    twice = client.post(
        "/api/v1/leases/complete", json={"lease_token": again["lease_token"]}, headers=auth
    )
    assert twice.status_code == 409
    body = client.get(f"/api/v1/experiments/{exp}", headers=user).json()
    assert body["status"] == "succeeded" and body["result"] == {"ok": 1}
    assert [a["outcome"] for a in body["attempts"]] == ["preempted", "succeeded"]
