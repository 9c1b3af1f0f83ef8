"""JWTs, password hashes and worker-token secrets (orchestrator/security.py)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.errors import NotAuthenticated
from orchestrator.models.types import utcnow
from orchestrator.security import (
    WORKER_TOKEN_PREFIX,
    decode_token,
    encode_token,
    hash_password,
    hash_worker_token,
    looks_like_worker_token,
    new_worker_token,
    verify_password,
)
from orchestrator.settings import Settings
from tests.support.api import make_settings
from tests.support.tokens import forge_jwt


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Pure: nothing here connects to the database or Redis named in the settings.
    return make_settings(database_url="sqlite://", redis_url="", data_dir=tmp_path)


def _rejected(settings: Settings, token: str, expected: str = "access") -> str:
    with pytest.raises(NotAuthenticated) as raised:
        decode_token(settings, token, expected=expected)  # type: ignore[arg-type]
    assert raised.value.status_code == 401
    assert raised.value.headers == {"WWW-Authenticate": "Bearer"}
    return raised.value.message


def test_round_trip(settings: Settings) -> None:
    token, issued = encode_token(
        settings, subject=42, type="refresh", lifetime=timedelta(days=14), family="fam-1"
    )
    claims = decode_token(settings, token, expected="refresh")
    assert (claims.subject, claims.type, claims.family, claims.jti) == (
        42,
        "refresh",
        "fam-1",
        issued.jti,
    )
    # exp is whole seconds in the token.
    assert abs((claims.expires_at - issued.expires_at).total_seconds()) < 1
    assert claims.expires_at.tzinfo is not None


def test_each_token_has_its_own_id(settings: Settings) -> None:
    ids = {
        encode_token(settings, subject=1, type="access", lifetime=timedelta(minutes=1))[1].jti
        for _ in range(5)
    }
    assert len(ids) == 5


def test_token_of_the_other_type_is_refused(settings: Settings) -> None:
    access, _ = encode_token(settings, subject=1, type="access", lifetime=timedelta(minutes=1))
    refresh, _ = encode_token(settings, subject=1, type="refresh", lifetime=timedelta(minutes=1))
    assert "refresh" in _rejected(settings, access, expected="refresh")
    assert "access" in _rejected(settings, refresh, expected="access")


def test_expired_token_is_refused(settings: Settings) -> None:
    token, _ = encode_token(settings, subject=1, type="access", lifetime=timedelta(seconds=-1))
    assert _rejected(settings, token) == "token expired"


def test_token_signed_by_another_installation_is_refused(
    settings: Settings, tmp_path: Path
) -> None:
    other = make_settings(
        database_url="sqlite://", redis_url="", data_dir=tmp_path, BATON_SECRET_KEY="z" * 48
    )
    token, _ = encode_token(other, subject=1, type="access", lifetime=timedelta(minutes=1))
    assert "signature" in _rejected(settings, token).lower()


def test_edited_payload_is_refused(settings: Settings) -> None:
    token, _ = encode_token(settings, subject=1, type="access", lifetime=timedelta(minutes=1))
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "2"  # become somebody else
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert "signature" in _rejected(settings, f"{header}.{forged}.{signature}").lower()


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"algorithm": "none"}, "alg"),
        ({"aud": "other-api"}, "audience"),
        ({"iss": "other-issuer"}, "issuer"),
        ({"sub": "not-a-number"}, "subject"),
        ({"typ": None}, "access"),
    ],
)
def test_foreign_tokens_are_refused(
    settings: Settings, claims: dict[str, object], reason: str
) -> None:
    token = forge_jwt(settings, subject=1, **claims)  # type: ignore[arg-type]
    assert reason in _rejected(settings, token).lower()


def test_not_before_in_the_future_is_refused(settings: Settings) -> None:
    token = forge_jwt(settings, subject=1, nbf=utcnow() + timedelta(minutes=5))
    assert "not yet valid" in _rejected(settings, token).lower()


def test_passwords_are_salted_hashes() -> None:
    first, second = hash_password("hunter2hunter2"), hash_password("hunter2hunter2")
    assert first != second and "hunter2" not in first
    assert first.startswith("$argon2")
    assert verify_password("hunter2hunter2", first) and verify_password("hunter2hunter2", second)
    assert not verify_password("hunter2hunter3", first)


def test_worker_token_secrets() -> None:
    a, b = new_worker_token(), new_worker_token()
    assert a != b and a.startswith(WORKER_TOKEN_PREFIX) and len(a) > 40
    assert looks_like_worker_token(a) and not looks_like_worker_token("eyJhbGciOi.x.y")
    # Stored as a stable hash (looked up by it), never as the secret itself.
    assert hash_worker_token(a) == hash_worker_token(a) != hash_worker_token(b)
    assert len(hash_worker_token(a)) == 64 and a not in hash_worker_token(a)
