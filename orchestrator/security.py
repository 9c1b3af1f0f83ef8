"""Password hashing, JWTs and worker-token secrets."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
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


def verify_password(password: str, hashed: str) -> bool:
    return _passwords.verify(password, hashed)


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
