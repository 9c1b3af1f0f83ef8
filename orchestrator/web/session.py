"""The browser session: a signed cookie carrying the user id, and CSRF tokens bound to it.

Stateless on purpose (API replicas share nothing but the signing key). The cookie holds a
random nonce; the CSRF token is an HMAC of that nonce, so a page from another origin can
neither read nor forge it. Every visitor gets a session, anonymous until login, so the
login form is protected too; logging in issues a fresh nonce (no session fixation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from fastapi import Response

from orchestrator.settings import Settings

COOKIE = "baton_session"
COOKIE_PATH = "/ui"
LIFETIME_SECONDS = 12 * 3600


@dataclass(frozen=True)
class WebSession:
    user_id: int | None
    nonce: str
    expires_at: int


def _key(settings: Settings, purpose: str) -> bytes:
    # Separate keys per purpose: a session MAC can never pass as a CSRF token or a JWT.
    label = f"baton-web:{purpose}".encode()
    return hmac.new(settings.signing_key.encode(), label, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(settings: Settings, body: str) -> str:
    return _b64(hmac.new(_key(settings, "session"), body.encode(), hashlib.sha256).digest())


def new_session(user_id: int | None) -> WebSession:
    return WebSession(
        user_id=user_id,
        nonce=secrets.token_urlsafe(18),
        expires_at=int(time.time()) + LIFETIME_SECONDS,
    )


def encode(settings: Settings, session: WebSession) -> str:
    payload = {"u": session.user_id, "n": session.nonce, "e": session.expires_at}
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{body}.{_mac(settings, body)}"


def decode(settings: Settings, cookie: str | None) -> WebSession | None:
    """The session in ``cookie``, or None if it is missing, forged, malformed or expired."""
    if not cookie or cookie.count(".") != 1:
        return None
    body, mac = cookie.split(".")
    if not hmac.compare_digest(mac, _mac(settings, body)):
        return None
    try:
        payload = json.loads(_unb64(body))
        session = WebSession(
            user_id=payload["u"], nonce=str(payload["n"]), expires_at=int(payload["e"])
        )
    except (ValueError, KeyError, TypeError):
        return None
    if session.user_id is not None and not isinstance(session.user_id, int):
        return None
    return session if session.expires_at > time.time() else None


def csrf_token(settings: Settings, session: WebSession) -> str:
    return _b64(hmac.new(_key(settings, "csrf"), session.nonce.encode(), hashlib.sha256).digest())


def csrf_ok(settings: Settings, session: WebSession | None, token: str | None) -> bool:
    if session is None or not token:
        return False
    return hmac.compare_digest(token, csrf_token(settings, session))


def set_cookie(response: Response, settings: Settings, session: WebSession) -> None:
    response.set_cookie(
        COOKIE,
        encode(settings, session),
        max_age=LIFETIME_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=settings.public_url.startswith("https://"),
    )
