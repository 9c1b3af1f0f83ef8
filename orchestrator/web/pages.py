"""The admin web pages: server-rendered HTML, every action a CSRF-checked form POST."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from orchestrator.api.deps import ClientAddress, ReadSessionDep, RuntimeDep, SessionDep
from orchestrator.errors import Conflict, NotAuthenticated, TooManyRequests
from orchestrator.models import ExperimentStatus
from orchestrator.services import accounts, experiments, fleet
from orchestrator.services import login as login_service
from orchestrator.web import session as web_session
from orchestrator.web import views
from orchestrator.web.deps import (
    CsrfChecked,
    PageRoute,
    WebAdmin,
    WebSessionDep,
    WebUser,
    context,
    redirect,
    render,
)
from orchestrator.web.session import WebSession

router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)

EXPERIMENTS_PER_PAGE = 50


def _safe_next(target: str) -> str:
    """Only back into the UI: a login link must not send anyone to another site."""
    ok = target.startswith("/ui") and "\\" not in target and "//" not in target
    return target if ok else "/ui"


@router.get("/login")
def login_form(
    request: Request, runtime: RuntimeDep, current: WebSessionDep, next: str = "/ui"
) -> Response:
    # Even the login form needs a session: its CSRF token is bound to one.
    request.state.web_session = current or web_session.new_session(None)
    response = render(request, "login.html", context(request, None, next=_safe_next(next)))
    if current is None:
        web_session.set_cookie(response, runtime.settings, request.state.web_session)
    return response


@router.post("/login", dependencies=[CsrfChecked])
async def login(
    request: Request,
    runtime: RuntimeDep,
    current: WebSessionDep,
    address: ClientAddress,
    email: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=256)],
    next: Annotated[str, Form()] = "/ui",
) -> Response:
    """Throttled like POST /auth/login (services/login.py): a wrong password answers the form
    again with 401, too many attempts with 429 and Retry-After."""
    try:
        user = await login_service.authenticate(
            runtime, email=email, password=password, address=address
        )
    except NotAuthenticated:
        return await _login_again(request, current, next, "Wrong email or password.", 401)
    except TooManyRequests as exc:
        message = f"Too many login attempts: try again in {exc.retry_after} s."
        response = await _login_again(request, current, next, message, exc.status_code)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    assert user.id is not None
    response = redirect(_safe_next(next))
    # A fresh nonce at login: a session planted before it cannot ride along.
    web_session.set_cookie(response, runtime.settings, web_session.new_session(user.id))
    return response


async def _login_again(
    request: Request, current: WebSession | None, next: str, error: str, status_code: int
) -> Response:
    request.state.web_session = current
    ctx = context(request, None, next=_safe_next(next), error=error)
    # Rendering reads templates from disk: not on the event loop.
    return await run_in_threadpool(render, request, "login.html", ctx, status_code=status_code)


@router.post("/logout", dependencies=[CsrfChecked])
def logout(runtime: RuntimeDep) -> Response:
    response = redirect("/ui/login")
    web_session.set_cookie(response, runtime.settings, web_session.new_session(None))
    return response


@router.get("")
def overview_page(
    request: Request, session: ReadSessionDep, runtime: RuntimeDep, user: WebUser
) -> Response:
    data = views.overview_data(session, runtime, user)
    return render(request, "overview.html", context(request, user, **data))


@router.get("/experiments")
def experiments_page(
    request: Request,
    session: ReadSessionDep,
    user: WebUser,
    status: ExperimentStatus | None = None,
    cursor: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    page = experiments.list_page(
        session,
        user=user,
        status=status,
        kind=None,
        tag=None,
        cursor=cursor,
        limit=EXPERIMENTS_PER_PAGE,
    )
    ctx = context(request, user, page=page, status=status, statuses=list(ExperimentStatus))
    return render(request, "experiments.html", ctx)


@router.get("/experiments/{experiment_id}")
def experiment_page(
    experiment_id: int,
    request: Request,
    session: ReadSessionDep,
    runtime: RuntimeDep,
    user: WebUser,
) -> Response:
    data = views.experiment_data(session, runtime, user, experiment_id)
    return render(request, "experiment.html", context(request, user, **data))


def _act(session: Session, back: str, action: Callable[[], Any], done: str) -> Response:
    """Run an action and go back to the page; a conflict (already finished...) is a message."""
    try:
        action()
    except Conflict as exc:
        session.rollback()
        return redirect(back, exc.message)
    return redirect(back, done)


@router.post("/experiments/{experiment_id}/cancel", dependencies=[CsrfChecked])
def cancel_experiment(
    experiment_id: int, session: SessionDep, runtime: RuntimeDep, user: WebUser
) -> Response:
    return _act(
        session,
        f"/ui/experiments/{experiment_id}",
        lambda: experiments.cancel(session, runtime, user=user, experiment_id=experiment_id),
        f"Experiment {experiment_id} canceled.",
    )


@router.post("/experiments/{experiment_id}/retry", dependencies=[CsrfChecked])
def retry_experiment(
    experiment_id: int, session: SessionDep, runtime: RuntimeDep, user: WebUser
) -> Response:
    return _act(
        session,
        f"/ui/experiments/{experiment_id}",
        lambda: experiments.retry(session, runtime, user=user, experiment_id=experiment_id),
        f"Experiment {experiment_id} queued again from its latest checkpoint.",
    )


@router.get("/workers/{worker_id}")
def worker_page(
    worker_id: int, request: Request, session: ReadSessionDep, runtime: RuntimeDep, user: WebUser
) -> Response:
    data = views.worker_data(session, runtime, user, worker_id)
    return render(request, "worker.html", context(request, user, **data))


@router.post("/workers/{worker_id}/drain", dependencies=[CsrfChecked])
def drain_worker(
    worker_id: int,
    session: SessionDep,
    admin: WebAdmin,
    draining: Annotated[bool, Form()] = True,
) -> Response:
    fleet.set_draining(session, worker_id=worker_id, draining=draining)
    done = "finishes its current job and takes no more" if draining else "takes jobs again"
    return redirect(f"/ui/workers/{worker_id}", f"Worker {worker_id} {done}.")


@router.post("/workers/{worker_id}/revoke-token", dependencies=[CsrfChecked])
def revoke_worker_token(worker_id: int, session: SessionDep, admin: WebAdmin) -> Response:
    worker = fleet.get_worker(session, worker_id)
    token = accounts.revoke_worker_token(session, token_id=worker.token_id)
    message = f"Token {token.name!r} revoked: its workers are refused from their next call."
    return redirect(f"/ui/workers/{worker_id}", message)
