"""Dependencies shared by the routers, as Annotated aliases."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session, select

from orchestrator.errors import Forbidden, NotAuthenticated
from orchestrator.models import User, WorkerToken
from orchestrator.models.types import utcnow
from orchestrator.runtime import Runtime
from orchestrator.security import decode_token, hash_worker_token, looks_like_worker_token

_bearer = HTTPBearer(auto_error=False)
TOKEN_TOUCH_INTERVAL = timedelta(seconds=60)


async def get_runtime(request: Request) -> Runtime:
    # async: nothing here blocks, and a sync dependency would wait for a threadpool slot.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    # Handlers commit explicitly (orchestrator.db.commit); anything uncommitted rolls back here.
    with Session(runtime.engine, expire_on_commit=False) as session:
        yield session


# Closed when the handler returns, before the response goes out: on SQLite an open
# transaction holds the writer lock, which must never wait on how fast a client reads.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


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


def _end_read(session: Session) -> None:
    """Close the auth lookup's transaction: on SQLite every transaction holds the write lock,
    and a long-polling claim must not keep it while it waits."""
    session.commit()


def _bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise NotAuthenticated("missing bearer token")
    return credentials.credentials


def get_current_user(session: SessionDep, runtime: RuntimeDep, credentials: BearerDep) -> User:
    token = _bearer_token(credentials)
    if looks_like_worker_token(token):
        raise Forbidden("worker tokens can only call the worker API")
    claims = decode_token(runtime.settings, token, expected="access")
    user = session.get(User, claims.subject)
    if user is None or not user.is_active:
        raise NotAuthenticated("user not found or disabled")
    _end_read(session)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_admin(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("admins only")
    return user


AdminUser = Annotated[User, Depends(get_admin)]


def get_worker_token(session: SessionDep, credentials: BearerDep) -> WorkerToken:
    token = _bearer_token(credentials)
    if not looks_like_worker_token(token):
        raise Forbidden("this endpoint needs a worker token (baton tokens create)")
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
        row.last_used_at = now
        session.add(row)
    _end_read(session)
    return row


CurrentWorkerToken = Annotated[WorkerToken, Depends(get_worker_token)]
