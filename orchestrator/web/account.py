"""The user's own pages: "My worker tokens" (create: shown once; revoke) and "Secrets" (names
and dates only; set; delete). Every action is a CSRF-checked form POST."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from sqlmodel import Session

from orchestrator.api.deps import ReadSessionDep, RuntimeDep, SessionDep
from orchestrator.errors import Conflict, Invalid
from orchestrator.models import User, WorkerToken
from orchestrator.models.secret import MAX_SECRET_BYTES
from orchestrator.services import accounts, user_secrets
from orchestrator.web.deps import CsrfChecked, PageRoute, WebUser, context, redirect, render

router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)


def _own_tokens(session: Session, user: User) -> list[WorkerToken]:
    # Everyone, admins included, sees their own here; the API lists all tokens for admins.
    return [t for t in accounts.tokens_of(session, user=user) if t.owner_id == user.id]


def _tokens_page(
    request: Request, session: Session, user: User, *, created: str | None = None
) -> Response:
    ctx = context(request, user, tokens=_own_tokens(session, user), created=created)
    return render(request, "tokens.html", ctx)


@router.get("/tokens")
def tokens_page(request: Request, session: ReadSessionDep, user: WebUser) -> Response:
    return _tokens_page(request, session, user)


@router.post("/tokens", dependencies=[CsrfChecked])
def create_token(
    request: Request,
    session: SessionDep,
    user: WebUser,
    name: Annotated[str, Form(min_length=1, max_length=100)],
) -> Response:
    _, secret = accounts.create_worker_token(session, name=name.strip() or "worker", owner=user)
    # Rendered, not redirected: the token must not travel in a flash cookie. Shown this once.
    return _tokens_page(request, session, user, created=secret)


@router.post("/tokens/{token_id}/revoke", dependencies=[CsrfChecked])
def revoke_token(token_id: int, session: SessionDep, user: WebUser) -> Response:
    row = accounts.revoke_worker_token(session, token_id=token_id, by=user)
    return redirect("/ui/tokens", f"Token {row.name!r} revoked: its workers are refused.")


@router.get("/secrets")
def secrets_page(request: Request, session: ReadSessionDep, user: WebUser) -> Response:
    rows = user_secrets.list_for(session, user=user)
    return render(request, "secrets.html", context(request, user, secrets=rows))


@router.post("/secrets", dependencies=[CsrfChecked])
def set_secret(
    session: SessionDep,
    runtime: RuntimeDep,
    user: WebUser,
    name: Annotated[str, Form(max_length=64)],
    value: Annotated[str, Form(min_length=1, max_length=MAX_SECRET_BYTES)],
) -> Response:
    try:
        user_secrets.put(session, runtime.settings, user=user, name=name.strip(), value=value)
    except Invalid as exc:
        return redirect("/ui/secrets", exc.message)
    return redirect("/ui/secrets", f"Secret {name.strip()} set.")


@router.post("/secrets/{name}/delete", dependencies=[CsrfChecked])
def delete_secret(name: str, session: SessionDep, user: WebUser) -> Response:
    try:
        user_secrets.delete(session, user=user, name=name)
    except Conflict as exc:
        session.rollback()
        return redirect("/ui/secrets", exc.message)
    return redirect("/ui/secrets", f"Secret {name} deleted.")
