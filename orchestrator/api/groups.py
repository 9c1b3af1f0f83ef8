"""Experiment groups: branches run side by side, compared when all have finished."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlmodel import col, select

from orchestrator.errors import AUTHENTICATED, error_responses
from orchestrator.models import ExperimentGroup
from orchestrator.models.group import GroupCreate, GroupDetail
from orchestrator.services import groups

from .deps import CurrentUser, ReadSessionDep, RowId, RuntimeDep, SessionDep

router = APIRouter(prefix="/api/v1/groups", tags=["groups"], responses=AUTHENTICATED)


@router.post("", response_model=GroupDetail, status_code=status.HTTP_201_CREATED)
def create_group(
    data: GroupCreate, session: SessionDep, runtime: RuntimeDep, user: CurrentUser
) -> GroupDetail:
    group = groups.create(session, runtime, owner=user, data=data)
    return groups.detail(session, group)


@router.get("", response_model=list[GroupDetail])
def list_groups(session: ReadSessionDep, user: CurrentUser) -> list[GroupDetail]:
    query = select(ExperimentGroup).order_by(col(ExperimentGroup.id).desc()).limit(100)
    if not user.is_admin:
        query = query.where(ExperimentGroup.owner_id == user.id)
    return [groups.detail(session, g) for g in session.exec(query).all()]


@router.get("/{group_id}", response_model=GroupDetail, responses=error_responses(404))
def get_group(group_id: RowId, session: ReadSessionDep, user: CurrentUser) -> GroupDetail:
    return groups.detail(session, groups.get_visible(session, user=user, group_id=group_id))
