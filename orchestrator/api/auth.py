"""Login, refresh-token rotation with reuse detection, logout."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import update
from sqlmodel import Session, col, select

from orchestrator.db import session_scope
from orchestrator.errors import Invalid, NotAuthenticated, error_responses
from orchestrator.models import RefreshToken, User
from orchestrator.models.types import utcnow
from orchestrator.models.user import UserPublic
from orchestrator.runtime import Runtime
from orchestrator.security import decode_token, encode_token
from orchestrator.services import login as login_service
from orchestrator.settings import Settings

from .deps import ClientAddress, CurrentUser, RuntimeDep, SessionDep

router = APIRouter(prefix="/auth", tags=["auth"], responses=error_responses(401))


class LoginJSON(BaseModel):
    username: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=256)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


def _issue(
    session: Session, settings: Settings, user: User, *, family: str | None = None
) -> TokenPair:
    assert user.id is not None
    family = family or uuid.uuid4().hex
    access, _ = encode_token(
        settings,
        subject=user.id,
        type="access",
        lifetime=timedelta(minutes=settings.access_token_minutes),
    )
    refresh, claims = encode_token(
        settings,
        subject=user.id,
        type="refresh",
        lifetime=timedelta(days=settings.refresh_token_days),
        family=family,
    )
    session.add(
        RefreshToken(
            jti=claims.jti, family_id=family, user_id=user.id, expires_at=claims.expires_at
        )
    )
    return TokenPair(
        access_token=access, refresh_token=refresh, expires_in=settings.access_token_minutes * 60
    )


async def _login_fields(request: Request) -> LoginJSON:
    """The OAuth2 password form (``username``, ``password``) or the same fields as JSON."""
    raw: Any
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            raw = await request.json()
        except ValueError:
            raise Invalid("body: malformed JSON") from None
    else:
        raw = dict(await request.form())
    try:
        return LoginJSON.model_validate(raw)
    except ValidationError as exc:
        raise Invalid(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from None


_LOGIN_BODY = {
    "requestBody": {
        "content": {
            "application/x-www-form-urlencoded": {"schema": LoginJSON.model_json_schema()},
            "application/json": {"schema": LoginJSON.model_json_schema()},
        },
        "required": True,
    }
}


def _login_pair(runtime: Runtime, user: User) -> TokenPair:
    with session_scope(runtime.engine) as session:  # one short write: the refresh token
        return _issue(session, runtime.settings, user)


@router.post(
    "/login",
    response_model=TokenPair,
    openapi_extra=_LOGIN_BODY,
    responses={
        429: {
            **error_responses(429)[429],
            "description": "too many attempts from this address or for this account",
            "headers": {
                "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
            },
        },
    },
)
async def login(request: Request, runtime: RuntimeDep, address: ClientAddress) -> TokenPair:
    """Throttled per address and per account (429 with Retry-After); nothing here blocks the
    event loop, and a failed login writes nothing."""
    fields = await _login_fields(request)
    user = await login_service.authenticate(
        runtime, email=fields.username, password=fields.password, address=address
    )
    return await run_in_threadpool(_login_pair, runtime, user)


def _revoke_family(session: Session, family: str) -> None:
    now = utcnow()
    for row in session.exec(select(RefreshToken).where(RefreshToken.family_id == family)):
        if row.revoked_at is None:
            row.revoked_at = now
            session.add(row)


@router.post("/refresh", response_model=TokenPair)
def refresh(body: RefreshIn, session: SessionDep, runtime: RuntimeDep) -> TokenPair:
    """Rotate: the old refresh token dies. Presenting a dead one again means it was stolen,
    so the whole family (every token descended from that login) is revoked."""
    claims = decode_token(runtime.settings, body.refresh_token, expected="refresh")
    row = session.get(RefreshToken, claims.jti)
    if row is None:
        raise NotAuthenticated("unknown refresh token")
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise NotAuthenticated("user not found or disabled")
    pair = _issue(session, runtime.settings, user, family=row.family_id)
    new_claims = decode_token(runtime.settings, pair.refresh_token, expected="refresh")
    # Conditional: of two concurrent refreshes with one token, exactly one changes the row
    # (on Postgres the second waits for the first's row lock, then finds it rotated).
    with session.no_autoflush:  # the new token is stored only if the rotation wins
        rotated = session.exec(
            update(RefreshToken)
            .where(
                col(RefreshToken.jti) == row.jti,
                col(RefreshToken.revoked_at).is_(None),
                col(RefreshToken.replaced_by).is_(None),
            )
            .values(replaced_by=new_claims.jti)
        )
    if rotated.rowcount != 1:
        session.expunge_all()
        _revoke_family(session, row.family_id)
        raise NotAuthenticated(
            "refresh token reuse detected: every session of this login is revoked",
            keep_changes=True,
        )
    return pair


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(
    session: SessionDep, runtime: RuntimeDep, refresh_token: Annotated[str, Body(embed=True)]
) -> None:
    claims = decode_token(runtime.settings, refresh_token, expected="refresh")
    row = session.get(RefreshToken, claims.jti)
    if row is not None:
        _revoke_family(session, row.family_id)


@router.get("/me", response_model=UserPublic, responses=error_responses(403))
def me(user: CurrentUser) -> User:
    return user
