"""Build JWTs by hand: expired, forged, wrong audience, `alg: none`.

Tokens are made with pyjwt directly, not with orchestrator.security, so a bug in the
product's encoder cannot hide the same bug in its decoder.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from orchestrator.settings import Settings

# Marks a claim to leave out of the payload.
OMIT = object()


def forge_jwt(
    settings: Settings,
    *,
    subject: int,
    typ: str = "access",
    key: str | None = None,
    algorithm: str = "HS256",
    lifetime: timedelta = timedelta(minutes=5),
    **claims: Any,
) -> str:
    """A token shaped like the server's own; ``claims`` override (or, with OMIT, drop) any claim.

    With the defaults the token is valid, so each test changes exactly one thing.
    """
    now = datetime.now(UTC)
    payload: dict[str, Any] = {
        "sub": str(subject),
        "jti": uuid.uuid4().hex,
        "typ": typ,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    payload.update(claims)
    payload = {name: value for name, value in payload.items() if value is not OMIT}
    if algorithm == "none":
        return jwt.encode(payload, None, algorithm="none")
    return jwt.encode(payload, settings.signing_key if key is None else key, algorithm=algorithm)
