"""JSON twins of the pages, polled by static/baton.js: the same fragments, re-rendered.

Rendering on the server keeps one template per panel; the script only swaps them in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from orchestrator.api.deps import ReadSessionDep, RuntimeDep
from orchestrator.models import User
from orchestrator.web import views
from orchestrator.web.deps import WebUser, context, render_fragment

router = APIRouter(prefix="/ui/api", include_in_schema=False)


def _reply(
    request: Request, user: User, page: str, names: Iterable[str], data: dict[str, Any]
) -> dict[str, Any]:
    ctx = context(request, user, **data)
    return {"sections": {name: render_fragment(f"{page}/_{name}.html", ctx) for name in names}}


def _json(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.get("/overview")
def overview(
    request: Request, session: ReadSessionDep, runtime: RuntimeDep, user: WebUser
) -> JSONResponse:
    data = views.overview_data(session, runtime, user)
    return _json(_reply(request, user, "overview", views.OVERVIEW_SECTIONS, data))


@router.get("/experiments/{experiment_id}")
def experiment(
    experiment_id: int,
    request: Request,
    session: ReadSessionDep,
    runtime: RuntimeDep,
    user: WebUser,
    log_attempt: Annotated[int | None, Query(ge=1)] = None,
    log_offset: Annotated[int, Query(ge=0)] = 0,
) -> JSONResponse:
    """The page's panels, plus the job output after ``log_offset`` of ``log_attempt``."""
    data = views.experiment_data(
        session, runtime, user, experiment_id, log_attempt=log_attempt, log_offset=log_offset
    )
    body = _reply(request, user, "experiment", views.EXPERIMENT_SECTIONS, data)
    log = data["log"]
    body["log"] = {
        "attempt": log.attempt,
        "text": log.text,
        "next_offset": log.next_offset,
        "reset": log.reset,
    }
    body["status"] = str(data["view"].experiment.status)
    return _json(body)


@router.get("/workers/{worker_id}")
def worker(
    worker_id: int, request: Request, session: ReadSessionDep, runtime: RuntimeDep, user: WebUser
) -> JSONResponse:
    data = views.worker_data(session, runtime, user, worker_id)
    return _json(_reply(request, user, "worker", views.WORKER_SECTIONS, data))
