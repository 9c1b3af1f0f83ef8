"""Experiments, as their owners (and admins) see them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from orchestrator.errors import AUTHENTICATED, error_responses
from orchestrator.models import ExperimentStatus
from orchestrator.models.experiment import ExperimentCreate, ExperimentDetail, ExperimentPage
from orchestrator.models.types import MAX_ROW_ID
from orchestrator.services import experiments

from .deps import CurrentUser, ReadSessionDep, RowId, RuntimeDep, SessionDep

router = APIRouter(prefix="/api/v1/experiments", tags=["experiments"], responses=AUTHENTICATED)


@router.post("", response_model=ExperimentDetail, status_code=status.HTTP_201_CREATED)
def create_experiment(
    data: ExperimentCreate, session: SessionDep, runtime: RuntimeDep, user: CurrentUser
) -> ExperimentDetail:
    experiment = experiments.create(session, runtime, owner=user, data=data)
    return experiments.detail(session, experiment)


@router.get("", response_model=ExperimentPage)
def list_experiments(
    session: ReadSessionDep,
    user: CurrentUser,
    status: ExperimentStatus | None = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ExperimentPage:
    return experiments.list_page(
        session, user=user, status=status, kind=kind, tag=tag, cursor=cursor, limit=limit
    )


@router.get("/{experiment_id}", response_model=ExperimentDetail, responses=error_responses(404))
def get_experiment(
    experiment_id: RowId, session: ReadSessionDep, user: CurrentUser
) -> ExperimentDetail:
    experiment = experiments.get_visible(session, user=user, experiment_id=experiment_id)
    return experiments.detail(session, experiment)


@router.post(
    "/{experiment_id}/cancel", response_model=ExperimentDetail, responses=error_responses(404, 409)
)
def cancel_experiment(
    experiment_id: RowId, session: SessionDep, runtime: RuntimeDep, user: CurrentUser
) -> ExperimentDetail:
    experiment = experiments.cancel(session, runtime, user=user, experiment_id=experiment_id)
    return experiments.detail(session, experiment)


@router.post(
    "/{experiment_id}/retry", response_model=ExperimentDetail, responses=error_responses(404, 409)
)
def retry_experiment(
    experiment_id: RowId, session: SessionDep, runtime: RuntimeDep, user: CurrentUser
) -> ExperimentDetail:
    experiment = experiments.retry(session, runtime, user=user, experiment_id=experiment_id)
    return experiments.detail(session, experiment)
