"""Enrollment codes through the API: bootstrap cells that carry one, and the exchange."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import nbformat
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlmodel import Session, col, select

from orchestrator.db import make_engine
from orchestrator.models import Enrollment, WorkerToken
from orchestrator.models.types import utcnow
from orchestrator.platforms.bootstrap import TARGETS
from orchestrator.settings import Settings
from tests.support.api import create_user, login
from tests.support.enrollment import code_in, exchange
from tests.support.workers import bearer, register

ENROLL = "/api/v1/workers/enroll"


@pytest.fixture
def user(client: TestClient, settings: Settings) -> dict[str, str]:
    create_user(settings, "u@example.com")
    return login(client, "u@example.com")


def _enrollment(settings: Settings) -> Enrollment:
    """The newest code issued."""
    engine = make_engine(settings.resolved_database_url)
    with Session(engine) as session:
        row = session.exec(select(Enrollment).order_by(col(Enrollment.id).desc())).first()
    engine.dispose()
    assert row is not None
    return row


def _age(settings: Settings, model: type[Enrollment] | type[WorkerToken], row_id: int) -> None:
    """Move a row's expiry into the past, as time would."""
    engine = make_engine(settings.resolved_database_url)
    with Session(engine) as session:
        row = session.get(model, row_id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
        session.commit()
    engine.dispose()


@pytest.mark.parametrize("platform", sorted(TARGETS))
def test_an_enrolling_cell_carries_a_code_and_reads_no_token(
    client: TestClient, settings: Settings, user: dict[str, str], platform: str, tmp_path: Path
) -> None:
    reply = client.get(
        f"/api/v1/bootstrap/{platform}",
        params={"enroll": True, "allow_loopback": True},
        headers=user,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    cell = body["cell"]
    compile(cell, f"<{platform} cell>", "exec")
    code = code_in(cell)
    assert f"main(['--enroll', '{code}'" in cell
    assert "BATON_WORKER_TOKEN" not in cell and "getpass" not in cell
    assert body["secret_name"] is None and "single-use enrollment code" in body["secret_store"]
    expires = body["enroll_expires_at"]
    assert utcnow() < _enrollment(settings).expires_at <= utcnow() + timedelta(hours=1)
    assert expires.startswith(f"{_enrollment(settings).expires_at:%Y-%m-%dT%H:%M:%S}")
    if platform == "shell":
        script = body["script"]
        assert f"--enroll {code}" in script and "BATON_WORKER_TOKEN" not in script
        (tmp_path / "worker.sh").write_text(script)
        bash = subprocess.run(["bash", "-n", str(tmp_path / "worker.sh")], check=False)
        assert bash.returncode == 0

    # The code buys one token, owned by the user who asked, for one session.
    token = exchange(client, code)
    register(client, token)
    enrolled = _enrollment(settings)
    assert enrolled.used_at is not None and enrolled.created_by_id is not None
    engine = make_engine(settings.resolved_database_url)
    with Session(engine) as session:
        row = session.get(WorkerToken, enrolled.worker_token_id)
    engine.dispose()
    assert row is not None and row.created_by_id == enrolled.created_by_id
    assert row.name == f"{platform} cell of u@example.com"
    assert row.expires_at is not None
    lifetime = row.expires_at - enrolled.used_at
    assert lifetime == timedelta(hours=settings.enroll_session_hours)

    # A notebook of the same is a fresh code of its own.
    notebook = client.get(
        f"/api/v1/bootstrap/{platform}",
        params={"enroll": True, "format": "ipynb", "allow_loopback": True},
        headers=user,
    )
    parsed = nbformat.reads(notebook.text, as_version=4)
    nbformat.validate(parsed)
    assert "single-use enrollment code" in "".join(parsed.cells[0].source)
    assert code_in("".join(parsed.cells[1].source)) != code


def test_unknown_used_and_expired_codes_are_refused(
    client: TestClient, settings: Settings, user: dict[str, str]
) -> None:
    unknown = client.post(ENROLL, json={"code": "bec_" + "x" * 43})
    assert unknown.status_code == 401 and unknown.json()["detail"] == "unknown enrollment code"
    assert client.post(ENROLL, json={"code": ""}).status_code == 422
    assert client.post(ENROLL, json={}).status_code == 422

    cells = [
        client.get(
            "/api/v1/bootstrap/kaggle",
            params={"enroll": True, "allow_loopback": True},
            headers=user,
        ).json()
        for _ in range(2)
    ]
    used, expired = (code_in(cell["cell"]) for cell in cells)
    exchange(client, used)
    reply = client.post(ENROLL, json={"code": used})
    assert reply.status_code == 410 and "already used" in reply.json()["detail"]

    enrollment = _enrollment(settings)
    assert enrollment.id is not None
    _age(settings, Enrollment, enrollment.id)
    reply = client.post(ENROLL, json={"code": expired})
    assert reply.status_code == 410 and "expired at" in reply.json()["detail"]


def test_an_enrolled_token_ends_with_its_session(
    client: TestClient, settings: Settings, user: dict[str, str]
) -> None:
    cell = client.get(
        "/api/v1/bootstrap/colab", params={"enroll": True, "allow_loopback": True}, headers=user
    ).json()
    token = exchange(client, code_in(cell["cell"]))
    register(client, token)
    token_id = _enrollment(settings).worker_token_id
    assert token_id is not None
    _age(settings, WorkerToken, token_id)
    reply = client.post("/api/v1/workers/register", json={"name": "w"}, headers=bearer(token))
    assert reply.status_code == 401 and "expired" in reply.json()["detail"]


def test_codes_live_at_most_an_hour() -> None:
    with pytest.raises(ValidationError, match="BATON_ENROLL_SECONDS"):
        Settings(BATON_ENROLL_SECONDS=3601)
    assert Settings(BATON_ENROLL_SECONDS=3600).enroll_seconds == 3600
