"""A user's secrets: set (the value goes in once), list (names and dates), delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from orchestrator.errors import AUTHENTICATED, error_responses
from orchestrator.models.secret import SECRET_NAME, SecretIn, SecretPublic
from orchestrator.services import user_secrets

from .deps import CurrentUser, ReadSessionDep, RuntimeDep, SessionDep

router = APIRouter(prefix="/api/v1/secrets", tags=["secrets"], responses=AUTHENTICATED)

SecretName = Annotated[str, Path(max_length=64, pattern=SECRET_NAME.pattern)]


@router.put("/{name}", response_model=SecretPublic)
def set_secret(
    name: SecretName, data: SecretIn, session: SessionDep, runtime: RuntimeDep, user: CurrentUser
) -> SecretPublic:
    """Create or replace a secret. It is stored encrypted and never returned: only experiments
    of yours that name it (``"secrets": [NAME]``) get it, as an environment variable, and only
    on your own workers."""
    row = user_secrets.put(session, runtime.settings, user=user, name=name, value=data.value)
    return SecretPublic.model_validate(row)


@router.get("", response_model=list[SecretPublic])
def list_secrets(session: ReadSessionDep, user: CurrentUser) -> list[SecretPublic]:
    """Your secrets' names and dates (never values; admins see only their own too)."""
    return [SecretPublic.model_validate(row) for row in user_secrets.list_for(session, user=user)]


@router.delete(
    "/{name}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404, 409)
)
def delete_secret(name: SecretName, session: SessionDep, user: CurrentUser) -> Response:
    user_secrets.delete(session, user=user, name=name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
