"""Dependencies shared by the routers, as Annotated aliases."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from orchestrator.db import read_session, session_scope
from orchestrator.errors import Forbidden, NotAuthenticated
from orchestrator.models import User, WorkerToken
from orchestrator.models.types import MAX_ROW_ID, utcnow
from orchestrator.runtime import Runtime
from orchestrator.security import decode_token, hash_worker_token, looks_like_worker_token

_bearer = HTTPBearer(auto_error=False)
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
TOKEN_TOUCH_INTERVAL = timedelta(seconds=60)


async def get_runtime(request: Request) -> Runtime:
    # async: nothing here blocks, and a sync dependency would wait for a threadpool slot.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    """The request's unit of work: committed once when the handler returned, rolled back if it
    raised; Redis and RQ effects run after the commit (orchestrator.db.commit)."""
    with session_scope(runtime.engine) as session:
        yield session


def get_read_session(runtime: RuntimeDep) -> Iterator[Session]:
    """For handlers that only read: takes no writer lock on SQLite."""
    with read_session(runtime.engine) as session:
        yield session


# Function scope: ended when the handler returns, before the response goes out, so the reply
# never claims what a failed commit did not keep, and on SQLite an open transaction never
# waits on how fast a client reads.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]


def client_address(request: Request, trusted_proxies: Sequence[IPv4Network | IPv6Network]) -> str:
    """Who sent the request: the TCP peer, unless that peer is a trusted proxy; then the
    nearest address in X-Forwarded-For that is not one (proxies append the peer they saw)."""
    peer = request.client.host if request.client else ""

    def trusted(address: str) -> bool:
        try:
            ip = ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in trusted_proxies)

    if not trusted(peer):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not trusted(hop):
            return hop
    return hops[0] if hops else peer


async def get_client_address(request: Request, runtime: RuntimeDep) -> str:
    return client_address(request, runtime.settings.trusted_proxies)


ClientAddress = Annotated[str, Depends(get_client_address)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise NotAuthenticated("missing bearer token")
    return credentials.credentials


# Authentication reads in a session of its own, closed at once: a long-polling claim or a
# log follower must not hold a transaction while it waits.


def get_current_user(runtime: RuntimeDep, credentials: BearerDep) -> User:
    token = _bearer_token(credentials)
    if looks_like_worker_token(token):
        raise Forbidden("worker tokens can only call the worker API")
    claims = decode_token(runtime.settings, token, expected="access")
    with read_session(runtime.engine) as session:
        user = session.get(User, claims.subject)
    if user is None or not user.is_active:
        raise NotAuthenticated("user not found or disabled")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_admin(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("admins only")
    return user


AdminUser = Annotated[User, Depends(get_admin)]


def get_worker_token(runtime: RuntimeDep, credentials: BearerDep) -> WorkerToken:
    token = _bearer_token(credentials)
    if not looks_like_worker_token(token):
        raise Forbidden("this endpoint needs a worker token (baton tokens create)")
    with read_session(runtime.engine) as session:
        row = session.exec(
            select(WorkerToken).where(WorkerToken.token_hash == hash_worker_token(token))
        ).one_or_none()
    if row is None or row.revoked_at is not None:
        raise NotAuthenticated("worker token unknown or revoked")
    now = utcnow()
    if row.expires_at is not None and row.expires_at <= now:
        raise NotAuthenticated("worker token expired (its session is over)")
    # Every worker of a token shares this row: writing it on each call serialises them all
    # (one row lock on Postgres, the one write lock on SQLite). Minute precision is plenty.
    if row.last_used_at is None or now - row.last_used_at > TOKEN_TOUCH_INTERVAL:
        _touch(runtime, row.id, now)
    return row


def _touch(runtime: Runtime, token_id: int | None, now: datetime) -> None:
    """Note the token's use; when its workers race, one writes and the others find it done."""
    stale = now - TOKEN_TOUCH_INTERVAL
    with session_scope(runtime.engine) as session:
        session.exec(
            update(WorkerToken)
            .where(
                col(WorkerToken.id) == token_id,
                or_(col(WorkerToken.last_used_at).is_(None), col(WorkerToken.last_used_at) < stale),
            )
            .values(last_used_at=now)
        )


CurrentWorkerToken = Annotated[WorkerToken, Depends(get_worker_token)]
