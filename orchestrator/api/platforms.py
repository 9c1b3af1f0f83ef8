"""Platforms: GPU usage and quotas, Kaggle launches, notebook bootstrap and the worker wheel."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from sqlmodel import col, select

from orchestrator.errors import AUTHENTICATED, Conflict, Invalid, NotFound, error_responses
from orchestrator.models import KaggleLaunch
from orchestrator.models.launch import KaggleLaunchPublic
from orchestrator.platforms import bootstrap, wheel
from orchestrator.platforms.rotation import worker_pip
from orchestrator.services import enrollment, usage
from orchestrator.settings import Settings
from orchestrator.urls import loopback_problem, public_url

from .deps import CurrentUser, ReadSessionDep, RuntimeDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["platforms"])

WEEK_PATTERN = r"^\d{4}-W\d{2}$"


@router.get("/platforms/usage", response_model=usage.UsageReport, responses=AUTHENTICATED)
def platform_usage(
    session: ReadSessionDep,
    runtime: RuntimeDep,
    user: CurrentUser,
    week: Annotated[str | None, Query(pattern=WEEK_PATTERN, description="ISO week")] = None,
) -> usage.UsageReport:
    """Per platform account: GPU hours used / allowed / reset time; per worker: utilization."""
    try:
        return usage.report(session, runtime.settings, week=week)
    except ValueError as exc:
        raise Invalid(f"week: {exc}") from None


@router.get(
    "/platforms/kaggle/launches", response_model=list[KaggleLaunchPublic], responses=AUTHENTICATED
)
def kaggle_launches(
    session: ReadSessionDep, user: CurrentUser, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[KaggleLaunch]:
    query = select(KaggleLaunch).order_by(col(KaggleLaunch.id).desc()).limit(limit)
    return list(session.exec(query).all())


def _refuse_unreachable(settings: Settings, platform: str, *, allow_loopback: bool) -> None:
    if platform not in bootstrap.TARGETS:
        known = ", ".join(bootstrap.TARGETS)
        raise NotFound(f"no bootstrap for {platform!r} (known: {known})")
    problem = loopback_problem(settings)
    if problem and not allow_loopback:
        raise Conflict(f"{problem}; allow_loopback=true for a worker on this machine")


@router.get(
    "/bootstrap/wheel/{filename}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, **error_responses(404)},
)
def package_wheel(filename: str) -> Response:
    """The worker agent or the workloads as a wheel (public: pip cannot log in, and they hold
    no secret)."""
    spec = wheel.by_filename(filename)
    if spec is None:
        served = ", ".join(s.filename for s in wheel.WHEELS.values())
        raise NotFound(f"no such wheel; this control plane serves {served}")
    return Response(wheel.build_wheel(spec.dist), media_type="application/octet-stream")


@router.get(
    "/bootstrap/{platform}",
    response_model=bootstrap.Bootstrap,
    responses={**AUTHENTICATED, **error_responses(404, 409)},
)
def bootstrap_cell(
    platform: str,
    runtime: RuntimeDep,
    session: SessionDep,
    user: CurrentUser,
    format: Literal["json", "ipynb"] = "json",
    allow_loopback: Annotated[
        bool, Query(description="render even for a loopback public URL (a worker on this host)")
    ] = False,
    enroll: Annotated[
        bool, Query(description="carry a single-use enrollment code instead of reading a token")
    ] = False,
) -> bootstrap.Bootstrap | Response:
    """A ready-to-paste cell starting a worker on ``platform``, or (format=ipynb) a notebook.

    409 while the public URL is loopback: no notebook elsewhere could reach it."""
    settings = runtime.settings
    # Refused before a code is issued: a code for a cell no notebook can use is wasted.
    _refuse_unreachable(settings, platform, allow_loopback=allow_loopback)
    issued = None
    if enroll:
        issued = enrollment.issue_for_cell(session, settings, platform=platform, created_by=user)
    result = bootstrap.render(
        platform, api_url=public_url(settings), pip=worker_pip(settings), enroll=issued
    )
    if format == "json":
        return result
    return Response(
        json.dumps(bootstrap.notebook(result), indent=1),
        media_type="application/x-ipynb+json",
        headers={"Content-Disposition": f'attachment; filename="baton-worker-{platform}.ipynb"'},
    )
