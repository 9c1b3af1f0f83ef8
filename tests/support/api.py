"""Test helpers that act on the real database and API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from orchestrator.db import commit, make_engine
from orchestrator.migrate import upgrade
from orchestrator.models import Role, User
from orchestrator.models.user import UserCreate
from orchestrator.services import accounts
from orchestrator.settings import Settings
from tests.support.stack import SECRET


def make_settings(
    *, database_url: str, redis_url: str, data_dir: Path, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "BATON_ENV": "test",
        "BATON_SECRET_KEY": SECRET,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BATON_DATA_DIR": data_dir,
        "BATON_HEARTBEAT_SECONDS": 1,
        "BATON_LEASE_SECONDS": 3,
        "BATON_CLAIM_WAIT_SECONDS": 2,
    }
    values.update(overrides)
    return Settings(**values)


def create_user(
    settings: Settings,
    email: str,
    password: str = "password123",
    *,
    admin: bool = False,
    notify_email: bool = True,
) -> int:
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    with Session(engine) as session:
        role = Role.admin if admin else Role.user
        data = UserCreate(email=email, password=password, role=role, notify_email=notify_email)
        user = accounts.create_user(session, data=data)
        commit(session)
        assert user.id is not None
        user_id = user.id
    engine.dispose()
    return user_id


def create_worker_token(
    settings: Settings, name: str = "test-worker", *, owner: str | None = None
) -> str:
    """A worker token owned by the user ``owner`` (an email); by default the first admin, else
    the first user, as the tests that make one user and one worker expect."""
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    with Session(engine) as session:
        user: User | None
        if owner is not None:
            user = session.exec(select(User).where(User.email == owner)).one()
        else:
            user = (
                accounts.first_admin(session)
                or session.exec(select(User).order_by(col(User.id))).first()
            )
        assert user is not None, "create the token's owner first"
        _, secret = accounts.create_worker_token(session, name=name, owner=user)
        commit(session)
    engine.dispose()
    return secret


def login(client: TestClient, email: str, password: str = "password123") -> dict[str, str]:
    response = client.post("/auth/login", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}
