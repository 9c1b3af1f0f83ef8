"""Worker tokens, as their owners see them: each user makes, lists and revokes their own."""

from __future__ import annotations

from fastapi import APIRouter, status

from orchestrator.errors import AUTHENTICATED, error_responses
from orchestrator.models import WorkerToken
from orchestrator.models.worker import WorkerTokenCreate, WorkerTokenCreated, WorkerTokenPublic
from orchestrator.services import accounts

from .deps import CurrentUser, ReadSessionDep, RowId, SessionDep

router = APIRouter(prefix="/api/v1/worker-tokens", tags=["worker tokens"], responses=AUTHENTICATED)


@router.post("", response_model=WorkerTokenCreated, status_code=status.HTTP_201_CREATED)
def create_worker_token(
    data: WorkerTokenCreate, session: SessionDep, user: CurrentUser
) -> WorkerTokenCreated:
    """A token for your own workers: they take your work (and, if an admin puts the token in
    a pool, the shareable work of the pool's users). The token is shown once."""
    row, secret = accounts.create_worker_token(session, name=data.name, owner=user)
    return WorkerTokenCreated.model_validate(row, update={"token": secret})


@router.get("", response_model=list[WorkerTokenPublic])
def list_worker_tokens(session: ReadSessionDep, user: CurrentUser) -> list[WorkerToken]:
    """Your tokens (an admin: every token). No secrets: those were shown once."""
    return list(accounts.tokens_of(session, user=user))


@router.delete("/{token_id}", response_model=WorkerTokenPublic, responses=error_responses(404))
def revoke_worker_token(token_id: RowId, session: SessionDep, user: CurrentUser) -> WorkerToken:
    """Revoke one of your tokens (an admin: any); another user's answers 404."""
    row = accounts.revoke_worker_token(session, token_id=token_id, by=user)
    return row
