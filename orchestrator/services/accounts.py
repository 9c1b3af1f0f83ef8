"""Users and worker tokens."""

from __future__ import annotations

from sqlmodel import Session, select

from orchestrator.errors import Conflict
from orchestrator.models import User, WorkerToken
from orchestrator.models.user import UserCreate
from orchestrator.security import hash_password, hash_worker_token, new_worker_token


def create_user(session: Session, *, data: UserCreate) -> User:
    email = data.email.strip().lower()
    if session.exec(select(User).where(User.email == email)).first() is not None:
        raise Conflict(f"a user with email {email} already exists")
    user = User(
        email=email,
        notify_email=data.notify_email,
        role=data.role,
        hashed_password=hash_password(data.password),
    )
    session.add(user)
    session.flush()
    return user


def create_worker_token(session: Session, *, name: str, created_by: User | None) -> tuple[WorkerToken, str]:
    """Returns the row and the secret; only the hash is stored, so the secret is shown once."""
    secret = new_worker_token()
    row = WorkerToken(
        name=name,
        token_hash=hash_worker_token(secret),
        created_by_id=created_by.id if created_by else None,
    )
    session.add(row)
    session.flush()
    return row, secret
