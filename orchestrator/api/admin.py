"""Admin-only management: users and worker tokens."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlmodel import col, select

from orchestrator.models import WorkerToken
from orchestrator.models.user import UserCreate, UserPublic
from orchestrator.models.worker import WorkerTokenCreate, WorkerTokenCreated, WorkerTokenPublic
from orchestrator.services import accounts

from .deps import AdminUser, ReadSessionDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["admin"])


@router.post("/users", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
def create_user(data: UserCreate, session: SessionDep, admin: AdminUser) -> UserPublic:
    user = accounts.create_user(session, data=data)
    return UserPublic.model_validate(user)


@router.post(
    "/worker-tokens", response_model=WorkerTokenCreated, status_code=status.HTTP_201_CREATED
)
def create_worker_token(
    data: WorkerTokenCreate, session: SessionDep, admin: AdminUser
) -> WorkerTokenCreated:
    row, secret = accounts.create_worker_token(session, name=data.name, created_by=admin)
    return WorkerTokenCreated.model_validate(row, update={"token": secret})


@router.get("/worker-tokens", response_model=list[WorkerTokenPublic])
def list_worker_tokens(session: ReadSessionDep, admin: AdminUser) -> list[WorkerToken]:
    return list(session.exec(select(WorkerToken).order_by(col(WorkerToken.id))).all())


@router.delete("/worker-tokens/{token_id}", response_model=WorkerTokenPublic)
def revoke_worker_token(token_id: int, session: SessionDep, admin: AdminUser) -> WorkerToken:
    return accounts.revoke_worker_token(session, token_id=token_id)
