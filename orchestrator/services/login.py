"""Checking a password without freezing the API (docs/auth.md, "Login limits").

Order matters: the throttle first (a Redis round trip, so a storm is turned away cheaply),
then one read that takes no write lock, then argon2 in the process's hashing pool (at most
BATON_PASSWORD_HASH_CONCURRENCY at a time, at a lower CPU priority). Every step that blocks
runs in a thread, never on the event loop.
"""

from __future__ import annotations

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from orchestrator.db import read_session
from orchestrator.errors import NotAuthenticated
from orchestrator.login_throttle import LoginThrottle
from orchestrator.models import User
from orchestrator.runtime import Runtime
from orchestrator.services import accounts


def _find(engine: Engine, email: str) -> User | None:
    with read_session(engine) as session:
        return accounts.user_by_email(session, email)


async def authenticate(runtime: Runtime, *, email: str, password: str, address: str) -> User:
    """The active user with this email and password. Raises TooManyRequests (429) when the
    address or the account is over its limit, else NotAuthenticated (401) for any wrong
    detail; an unknown email costs the same hash as a known one."""
    email = accounts.normalize_email(email)
    throttle = LoginThrottle.from_settings(runtime.redis, runtime.settings)
    await run_in_threadpool(throttle.admit, address=address, email=email)
    user = await run_in_threadpool(_find, runtime.engine, email)
    hashed = user.hashed_password if user is not None else None
    matches = await runtime.password_hashing.verify(password, hashed)
    if user is None or not user.is_active or not matches:
        raise NotAuthenticated("wrong email or password")
    await run_in_threadpool(throttle.succeeded, email)
    return user
