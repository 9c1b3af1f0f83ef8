"""Platforms: GPU usage and quotas, Kaggle launches, notebook bootstrap and the worker wheel."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from sqlmodel import col, select

from orchestrator.db import commit
from orchestrator.errors import Invalid, NotFound
from orchestrator.models import KaggleLaunch
from orchestrator.models.launch import KaggleLaunchPublic
from orchestrator.platforms import bootstrap, wheel
from orchestrator.platforms.rotation import worker_pip
from orchestrator.services import enrollment, usage
from orchestrator.settings import Settings

from .deps import CurrentUser, RuntimeDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["platforms"])

WEEK_PATTERN = r"^\d{4}-W\d{2}$"


@router.get("/platforms/usage", response_model=usage.UsageReport)
def platform_usage(
    session: SessionDep,
    runtime: RuntimeDep,
    user: CurrentUser,
    week: Annotated[str | None, Query(pattern=WEEK_PATTERN, description="ISO week")] = None,
) -> usage.UsageReport:
    """Per platform account: GPU hours used / allowed / reset time; per worker: utilization."""
    try:
        return usage.report(session, runtime.settings, week=week)
    except ValueError as exc:
        raise Invalid(f"week: {exc}") from None


@router.get("/platforms/kaggle/launches", response_model=list[KaggleLaunchPublic])
def kaggle_launches(
    session: SessionDep, user: CurrentUser, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[KaggleLaunch]:
    query = select(KaggleLaunch).order_by(col(KaggleLaunch.id).desc()).limit(limit)
    return list(session.exec(query).all())


def _known(platform: str) -> None:
    if platform not in bootstrap.TARGETS:
        known = ", ".join(bootstrap.TARGETS)
        raise NotFound(f"no bootstrap for {platform!r} (known: {known})")


def render(
    settings: Settings, platform: str, enroll: enrollment.Issued | None = None
) -> bootstrap.Bootstrap:
    _known(platform)
    return bootstrap.render(
        platform, api_url=settings.public_url, pip=worker_pip(settings), enroll=enroll
    )


@router.get("/bootstrap/wheel/{filename}", response_class=Response)
def worker_wheel(filename: str) -> Response:
    """The worker agent as a wheel (public: pip cannot log in, and it holds no secret)."""
    if filename != wheel.wheel_name():
        raise NotFound(f"no such wheel; this control plane serves {wheel.wheel_name()}")
    return Response(wheel.build_wheel(), media_type="application/octet-stream")


@router.get("/bootstrap/{platform}", response_model=bootstrap.Bootstrap)
def bootstrap_cell(
    platform: str,
    runtime: RuntimeDep,
    session: SessionDep,
    user: CurrentUser,
    format: Literal["json", "ipynb"] = "json",
    enroll: Annotated[
        bool, Query(description="carry a single-use enrollment code instead of reading a token")
    ] = False,
) -> bootstrap.Bootstrap | Response:
    """A ready-to-paste cell starting a worker on ``platform``, or (format=ipynb) a notebook."""
    _known(platform)
    issued = None
    if enroll:
        issued = enrollment.issue_for_cell(
            session, runtime.settings, platform=platform, created_by=user
        )
        commit(session)
    result = render(runtime.settings, platform, issued)
    if format == "json":
        return result
    return Response(
        json.dumps(bootstrap.notebook(result), indent=1),
        media_type="application/x-ipynb+json",
        headers={"Content-Disposition": f'attachment; filename="baton-worker-{platform}.ipynb"'},
    )
