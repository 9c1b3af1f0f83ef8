"""Users and worker tokens."""

from __future__ import annotations

from sqlmodel import Session, select

from orchestrator.errors import Conflict, NotFound
from orchestrator.models import User, WorkerToken
from orchestrator.models.types import utcnow
from orchestrator.models.user import UserCreate
from orchestrator.security import (
    hash_password,
    hash_worker_token,
    new_worker_token,
    verify_password,
)


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


def authenticate(session: Session, *, email: str, password: str) -> User | None:
    """The active user with this email and password, or None (the caller says no either way)."""
    user = session.exec(select(User).where(User.email == email.strip().lower())).one_or_none()
    if user is None or not user.is_active or not verify_password(password, user.hashed_password):
        return None
    return user


def create_worker_token(
    session: Session, *, name: str, created_by: User | None
) -> tuple[WorkerToken, str]:
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


def revoke_worker_token(session: Session, *, token_id: int) -> WorkerToken:
    """Revoke once (idempotent): every worker using it is refused from its next call on."""
    row = session.get(WorkerToken, token_id)
    if row is None:
        raise NotFound(f"worker token {token_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
    return row
