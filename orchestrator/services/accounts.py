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
)


def normalize_email(email: str) -> str:
    return email.strip().lower()


def create_user(session: Session, *, data: UserCreate) -> User:
    email = normalize_email(data.email)
    if user_by_email(session, email) is not None:
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


def user_by_email(session: Session, email: str) -> User | None:
    """The user with this email (as normalize_email leaves it), active or not."""
    return session.exec(select(User).where(User.email == email)).one_or_none()


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
