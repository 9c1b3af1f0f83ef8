"""Password hashing, JWTs and worker-token secrets."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal

import jwt
from passlib.context import CryptContext

from orchestrator.errors import NotAuthenticated
from orchestrator.models.types import utcnow
from orchestrator.settings import Settings

ALGORITHM = "HS256"
WORKER_TOKEN_PREFIX = "bwt_"

# passlib's bcrypt backend breaks with bcrypt>=4.1; argon2 is the scheme we use.
_passwords = CryptContext(schemes=["argon2"], deprecated="auto")

TokenType = Literal["access", "refresh"]


def hash_password(password: str) -> str:
    return _passwords.hash(password)


def verify_password(password: str, hashed: str | None) -> bool:
    """Whether ``password`` matches ``hashed``. With no hash (an unknown email) it checks a
    dummy hash instead and says no: unknown and known emails take the same time."""
    if hashed is None:
        _passwords.verify(password, _dummy_hash())
        return False
    return _passwords.verify(password, hashed)


@cache
def _dummy_hash() -> str:
    # Made with the current parameters, so checking it costs what checking a real hash does.
    return _passwords.hash(secrets.token_urlsafe(24))


# How much lower than the rest of the process password hashing runs (a nice increment).
HASHING_NICE = 10


class HashingPool:
    """Where one API process checks passwords: at most ``size`` at once (a storm queues here,
    holding no thread of the request threadpool), on threads of lower CPU priority, so the
    event loop and the workers' lease calls get the cores first."""

    def __init__(self, size: int) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=size, thread_name_prefix="baton-hashing", initializer=_lower_priority
        )

    async def verify(self, password: str, hashed: str | None) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, verify_password, password, hashed)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _lower_priority() -> None:
    # Linux keeps a nice value per thread (setpriority on a thread id), and the threads
    # argon2 starts for its lanes inherit it. Elsewhere the hashes run at normal priority.
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + HASHING_NICE))


@dataclass(frozen=True)
class TokenClaims:
    subject: int
    jti: str
    type: TokenType
    expires_at: datetime
    family: str | None = None


def encode_token(
    settings: Settings,
    *,
    subject: int,
    type: TokenType,
    lifetime: timedelta,
    family: str | None = None,
) -> tuple[str, TokenClaims]:
    now = utcnow()
    claims = TokenClaims(
        subject=subject, jti=uuid.uuid4().hex, type=type, expires_at=now + lifetime, family=family
    )
    payload: dict[str, Any] = {
        "sub": str(subject),
        "jti": claims.jti,
        "typ": type,
        "iat": now,
        "nbf": now,
        "exp": claims.expires_at,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    if family:
        payload["fam"] = family
    return jwt.encode(payload, settings.signing_key, algorithm=ALGORITHM), claims


def decode_token(settings: Settings, token: str, *, expected: TokenType) -> TokenClaims:
    """Verify signature, algorithm and every registered claim; raise 401 on any doubt."""
    try:
        payload = jwt.decode(
            token,
            settings.signing_key,
            algorithms=[ALGORITHM],  # an explicit list: never "none", never what the token says
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise NotAuthenticated("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise NotAuthenticated(f"invalid token: {exc}") from exc
    if payload.get("typ") != expected:
        raise NotAuthenticated(f"expected a {expected} token")
    try:
        subject = int(payload["sub"])
    except ValueError as exc:
        raise NotAuthenticated("invalid token subject") from exc
    return TokenClaims(
        subject=subject,
        jti=payload["jti"],
        type=expected,
        expires_at=datetime.fromtimestamp(payload["exp"], tz=utcnow().tzinfo),
        family=payload.get("fam"),
    )


def new_worker_token() -> str:
    return WORKER_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_worker_token(token: str) -> str:
    # Worker tokens are long random strings, so a fast hash is enough (unlike passwords).
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_worker_token(token: str) -> bool:
    return token.startswith(WORKER_TOKEN_PREFIX)
