"""The server decides which checkpoint an experiment resumes from: a lease may only report its
own attempt's key, ``<experiment>/<attempt>-<step>``, with the step it names. Anything else is
a 422 that changes nothing (real app, real DB on SQLite and Postgres, real Redis)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.testclient import TestClient

from orchestrator.services.leases import MAX_STEP
from orchestrator.settings import Settings
from tests.support.api import create_user, create_worker_token, login
from tests.support.experiments import submit
from tests.support.workers import bearer, claim, register


def _report(
    client: TestClient, token: str, verb: str, grant: dict[str, Any], key: str, step: int
) -> httpx.Response:
    return client.post(
        f"/api/v1/leases/{verb}",
        json={"lease_token": grant["lease_token"], "checkpoint": {"key": key, "step": step}},
        headers=bearer(token),
    )


def test_only_the_attempts_own_checkpoint_key_is_recorded(
    client: TestClient, settings: Settings
) -> None:
    create_user(settings, "u@example.com")
    user = login(client, "u@example.com")
    token = create_worker_token(settings)
    mine = submit(client, user, "mine")
    other = submit(client, user, "other")
    worker = register(client, token)
    grant = claim(client, token, worker)
    assert grant is not None and grant["experiment_id"] == mine and grant["attempt"] == 1
    assert claim(client, token, worker) is not None  # the other one runs too

    bad = [
        (f"{other}/0001-000000000005", 5),  # another experiment's checkpoint
        (f"{mine}/0002-000000000005", 5),  # another attempt's
        (f"{mine}/0001-000000000006", 5),  # a step other than the one reported
        (f"{mine}/1-5", 5),  # not the store's spelling of the key
        (f"../{mine}/0001-000000000005", 5),
        (f"{mine}/0001-000000000005/../../{other}/0001-000000000005", 5),
        (f"{mine}/0001-{MAX_STEP + 1:012d}", MAX_STEP + 1),  # past what a key can hold
        (f"{mine}/0001--00000000001", -1),
    ]
    for verb in ("heartbeat", "complete", "fail", "release"):
        for key, step in bad:
            reply = _report(client, token, verb, grant, key, step)
            assert reply.status_code == 422, (verb, key, step, reply.text)
            assert "checkpoint" in reply.json()["detail"], reply.text

    body = client.get(f"/api/v1/experiments/{mine}", headers=user).json()
    assert body["status"] == "running" and body["checkpoint_step"] is None, body
    assert body["attempts"][0]["last_checkpoint_step"] is None
    assert body["attempts"][0]["outcome"] is None

    good = _report(client, token, "heartbeat", grant, f"{mine}/0001-000000000005", 5)
    assert good.status_code == 200, good.text
    done = _report(client, token, "complete", grant, f"{mine}/0001-000000000007", 7)
    assert done.status_code == 200, done.text
    body = client.get(f"/api/v1/experiments/{mine}", headers=user).json()
    assert body["status"] == "succeeded" and body["checkpoint_step"] == 7, body
