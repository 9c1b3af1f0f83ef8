"""Enrollment codes: one worker session started without a long-lived secret in the notebook.

Whoever starts a session that cannot be handed a secret (a kernel pushed by the Kaggle
rotation, a pasted cell) gets a code instead. The agent exchanges it once, within
``BATON_ENROLL_SECONDS`` (at most an hour), for a fresh worker token that expires with the
session. Only the code's sha256 is stored; the token is stored as every token is.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from orchestrator.errors import Gone, NotAuthenticated
from orchestrator.models import Enrollment, Pool, PoolToken, User, WorkerToken
from orchestrator.models.enrollment import Enrolled
from orchestrator.models.types import utcnow
from orchestrator.security import hash_worker_token
from orchestrator.services import accounts
from orchestrator.settings import Settings

CODE_PREFIX = "bec_"
# A launched session's token outlives the kernel's timeout by this much: time to hand over.
HANDOVER = timedelta(hours=1)
MAKE_ANOTHER = "each code starts one worker session; make a new one (baton bootstrap --enroll)"


@dataclass(frozen=True)
class Issued:
    code: str  # shown once: only its hash is kept
    expires_at: datetime
    launch_id: int | None = None


def _hash(code: str) -> str:
    # A long random string, like a worker token: a fast hash is enough.
    return hash_worker_token(code)


def issue(
    session: Session,
    settings: Settings,
    *,
    token_name: str,
    session_seconds: int,
    launch_id: int | None = None,
    created_by: User | None = None,
) -> Issued:
    """A new code, bound to what made it; flushed, not committed."""
    code = CODE_PREFIX + secrets.token_urlsafe(32)
    row = Enrollment(
        code_hash=_hash(code),
        launch_id=launch_id,
        created_by_id=created_by.id if created_by else None,
        token_name=token_name[:100],
        session_seconds=session_seconds,
        expires_at=utcnow() + timedelta(seconds=settings.enroll_seconds),
    )
    session.add(row)
    session.flush()
    return Issued(code=code, expires_at=row.expires_at, launch_id=launch_id)


def issue_for_cell(
    session: Session, settings: Settings, *, platform: str, created_by: User | None
) -> Issued:
    """For a pasted cell (`bootstrap --enroll`): its token lasts BATON_ENROLL_SESSION_HOURS."""
    who = created_by.email if created_by else "the operator"
    return issue(
        session,
        settings,
        token_name=f"{platform} cell of {who}",
        session_seconds=int(settings.enroll_session_hours * 3600),
        created_by=created_by,
    )


def issue_for_launch(
    session: Session, settings: Settings, *, launch_id: int, timeout_seconds: int
) -> Issued:
    """For a kernel the rotation pushes: its token lasts the kernel's timeout plus HANDOVER."""
    return issue(
        session,
        settings,
        token_name=f"kaggle launch {launch_id}",
        session_seconds=timeout_seconds + int(HANDOVER.total_seconds()),
        launch_id=launch_id,
    )


def exchange(session: Session, code: str, *, launch_pool: str = "") -> Enrolled:
    """The code's worker token, once; 401 for a code never issued, 410 for a spent one.
    A launch's token joins the pool named ``launch_pool`` (BATON_KAGGLE_POOL) if it exists."""
    digest = _hash(code)
    # Locked: two agents presenting the same code at once get one token between them.
    row = session.exec(
        select(Enrollment).where(Enrollment.code_hash == digest).with_for_update()
    ).one_or_none()
    if row is None or not hmac.compare_digest(row.code_hash, digest):
        raise NotAuthenticated("unknown enrollment code")
    now = utcnow()
    if row.used_at is not None:
        raise Gone(f"this enrollment code was already used; {MAKE_ANOTHER}")
    if row.expires_at <= now:
        raise Gone(
            f"this enrollment code expired at {row.expires_at:%Y-%m-%d %H:%M:%S} UTC; "
            + MAKE_ANOTHER
        )
    creator = session.get(User, row.created_by_id) if row.created_by_id is not None else None
    # A cell's token belongs to whoever asked for the cell; a Kaggle launch's (no creator) to
    # the first admin, who configured the rotation's Kaggle account.
    owner = creator or accounts.first_admin(session)
    if owner is None:
        raise Gone("no admin is left to own this launch's worker token; " + MAKE_ANOTHER)
    token, secret = accounts.create_worker_token(
        session, name=row.token_name, owner=owner, created_by=creator
    )
    token.expires_at = now + timedelta(seconds=row.session_seconds)
    if row.launch_id is not None and launch_pool:
        pool = session.exec(select(Pool).where(Pool.name == launch_pool)).first()
        if pool is not None and pool.id is not None and token.id is not None:
            session.add(PoolToken(pool_id=pool.id, token_id=token.id))
    row.used_at = now
    row.worker_token_id = token.id
    session.add_all([token, row])
    return Enrolled(token=secret, expires_at=token.expires_at)


def close_launch(session: Session, launch_id: int) -> None:
    """A launch ended: its unused code can no longer be exchanged, and the worker token its
    kernel got stops working (the kernel is gone)."""
    now = utcnow()
    rows = session.exec(select(Enrollment).where(Enrollment.launch_id == launch_id)).all()
    for row in rows:
        if row.used_at is None and row.expires_at > now:
            row.expires_at = now
            session.add(row)
    token_ids = [row.worker_token_id for row in rows if row.worker_token_id is not None]
    if not token_ids:
        return
    tokens = session.exec(
        select(WorkerToken).where(
            col(WorkerToken.id).in_(token_ids), col(WorkerToken.revoked_at).is_(None)
        )
    ).all()
    for token in tokens:
        token.revoked_at = now
        session.add(token)
