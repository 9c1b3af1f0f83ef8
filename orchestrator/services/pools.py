"""Pools: named sets of users and worker tokens, managed by admins.

A worker token takes its owner's work, plus the work of every user of every pool it is in,
except experiments that name secrets: those run only on their owner's own workers.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from orchestrator.errors import Conflict, NotFound
from orchestrator.models import Pool, PoolToken, PoolUser, User, WorkerToken
from orchestrator.models.pool import PoolPublic


def get(session: Session, pool_id: int) -> Pool:
    pool = session.get(Pool, pool_id)
    if pool is None:
        raise NotFound(f"pool {pool_id} not found")
    return pool


def create(session: Session, *, name: str) -> Pool:
    if session.exec(select(Pool).where(Pool.name == name)).first() is not None:
        raise Conflict(f"a pool named {name} already exists")
    pool = Pool(name=name)
    session.add(pool)
    session.flush()
    return pool


def delete(session: Session, pool_id: int) -> None:
    pool = get(session, pool_id)
    for model in (PoolUser, PoolToken):
        for row in session.exec(select(model).where(model.pool_id == pool_id)).all():
            session.delete(row)
    session.flush()
    session.delete(pool)


def public(session: Session, pool: Pool) -> PoolPublic:
    users = session.exec(select(PoolUser.user_id).where(PoolUser.pool_id == pool.id)).all()
    tokens = session.exec(select(PoolToken.token_id).where(PoolToken.pool_id == pool.id)).all()
    return PoolPublic.model_validate(
        pool, update={"user_ids": sorted(users), "token_ids": sorted(tokens)}
    )


def all_pools(session: Session) -> Sequence[Pool]:
    return session.exec(select(Pool).order_by(col(Pool.id))).all()


def set_user(session: Session, pool_id: int, user_id: int, *, member: bool) -> Pool:
    pool = get(session, pool_id)
    if session.get(User, user_id) is None:
        raise NotFound(f"user {user_id} not found")
    _set(session, PoolUser(pool_id=pool_id, user_id=user_id), (pool_id, user_id), member=member)
    return pool


def set_token(session: Session, pool_id: int, token_id: int, *, member: bool) -> Pool:
    pool = get(session, pool_id)
    if session.get(WorkerToken, token_id) is None:
        raise NotFound(f"worker token {token_id} not found")
    _set(session, PoolToken(pool_id=pool_id, token_id=token_id), (pool_id, token_id), member=member)
    return pool


def _set(
    session: Session, link: PoolUser | PoolToken, key: tuple[int, int], *, member: bool
) -> None:
    """Idempotent either way: adding a member twice or removing a non-member is no error."""
    existing = session.get(type(link), key)
    if member and existing is None:
        session.add(link)
    elif not member and existing is not None:
        session.delete(existing)
    session.flush()


def shared_owner_ids(session: Session, *, token_id: int) -> set[int]:
    """Users whose secret-free work a token takes through the pools it is in."""
    rows = session.exec(
        select(PoolUser.user_id)
        .join(PoolToken, col(PoolToken.pool_id) == col(PoolUser.pool_id))
        .where(PoolToken.token_id == token_id)
    ).all()
    return set(rows)
