"""Users and worker tokens."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from orchestrator.errors import Conflict, NotFound
from orchestrator.models import Role, User, WorkerToken
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


def all_users(session: Session) -> Sequence[User]:
    return session.exec(select(User).order_by(col(User.id))).all()


def user_by_email(session: Session, email: str) -> User | None:
    """The user with this email (as normalize_email leaves it), active or not."""
    return session.exec(select(User).where(User.email == email)).one_or_none()


def first_admin(session: Session) -> User | None:
    """The installation's first active admin: owner of tokens made without a logged-in user
    (`baton tokens create --local`, Kaggle launches)."""
    return session.exec(
        select(User)
        .where(User.role == Role.admin, col(User.is_active).is_(True))
        .order_by(col(User.id))
    ).first()


def create_worker_token(
    session: Session, *, name: str, owner: User, created_by: User | None = None
) -> tuple[WorkerToken, str]:
    """A token whose workers take ``owner``'s work. Returns the row and the secret; only the
    hash is stored, so the secret is shown once."""
    secret = new_worker_token()
    row = WorkerToken(
        name=name,
        token_hash=hash_worker_token(secret),
        owner_id=owner.id,
        created_by_id=(created_by or owner).id,
    )
    session.add(row)
    session.flush()
    return row, secret


def tokens_of(session: Session, *, user: User) -> Sequence[WorkerToken]:
    """The user's own tokens; an admin's view is every token."""
    query = select(WorkerToken).order_by(col(WorkerToken.id))
    if not user.is_admin:
        query = query.where(WorkerToken.owner_id == user.id)
    return session.exec(query).all()


def revoke_worker_token(session: Session, *, token_id: int, by: User | None = None) -> WorkerToken:
    """Revoke once (idempotent): every worker using it is refused from its next call on.
    ``by`` a non-admin: only their own token (another's reads as 404, as if it did not exist)."""
    row = session.get(WorkerToken, token_id)
    if row is None or (by is not None and not by.is_admin and row.owner_id != by.id):
        raise NotFound(f"worker token {token_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
    return row
