"""Admin-only management: users and pools."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from orchestrator.errors import AUTHENTICATED, error_responses
from orchestrator.models.pool import PoolCreate, PoolPublic
from orchestrator.models.user import UserCreate, UserPublic
from orchestrator.services import accounts, pools

from .deps import AdminUser, ReadSessionDep, RowId, SessionDep

router = APIRouter(prefix="/api/v1", tags=["admin"], responses=AUTHENTICATED)


@router.post(
    "/users",
    response_model=UserPublic,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409),
)
def create_user(data: UserCreate, session: SessionDep, admin: AdminUser) -> UserPublic:
    user = accounts.create_user(session, data=data)
    return UserPublic.model_validate(user)


@router.get("/users", response_model=list[UserPublic])
def list_users(session: SessionDep, admin: AdminUser) -> list[UserPublic]:
    return [UserPublic.model_validate(u) for u in accounts.all_users(session)]


# --- pools: which users' work a worker token takes besides its owner's ----------------------


@router.post(
    "/pools",
    response_model=PoolPublic,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409),
)
def create_pool(data: PoolCreate, session: SessionDep, admin: AdminUser) -> PoolPublic:
    pool = pools.create(session, name=data.name)
    return pools.public(session, pool)


@router.get("/pools", response_model=list[PoolPublic])
def list_pools(session: ReadSessionDep, admin: AdminUser) -> list[PoolPublic]:
    return [pools.public(session, pool) for pool in pools.all_pools(session)]


@router.get("/pools/{pool_id}", response_model=PoolPublic, responses=error_responses(404))
def get_pool(pool_id: RowId, session: ReadSessionDep, admin: AdminUser) -> PoolPublic:
    return pools.public(session, pools.get(session, pool_id))


@router.delete(
    "/pools/{pool_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404)
)
def delete_pool(pool_id: RowId, session: SessionDep, admin: AdminUser) -> Response:
    pools.delete(session, pool_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _membership(session: SessionDep, pool_id: RowId) -> PoolPublic:
    return pools.public(session, pools.get(session, pool_id))


@router.put(
    "/pools/{pool_id}/users/{user_id}", response_model=PoolPublic, responses=error_responses(404)
)
def add_pool_user(
    pool_id: RowId, user_id: RowId, session: SessionDep, admin: AdminUser
) -> PoolPublic:
    pools.set_user(session, pool_id, user_id, member=True)
    return _membership(session, pool_id)


@router.delete(
    "/pools/{pool_id}/users/{user_id}", response_model=PoolPublic, responses=error_responses(404)
)
def remove_pool_user(
    pool_id: RowId, user_id: RowId, session: SessionDep, admin: AdminUser
) -> PoolPublic:
    pools.set_user(session, pool_id, user_id, member=False)
    return _membership(session, pool_id)


@router.put(
    "/pools/{pool_id}/tokens/{token_id}", response_model=PoolPublic, responses=error_responses(404)
)
def add_pool_token(
    pool_id: RowId, token_id: RowId, session: SessionDep, admin: AdminUser
) -> PoolPublic:
    pools.set_token(session, pool_id, token_id, member=True)
    return _membership(session, pool_id)


@router.delete(
    "/pools/{pool_id}/tokens/{token_id}", response_model=PoolPublic, responses=error_responses(404)
)
def remove_pool_token(
    pool_id: RowId, token_id: RowId, session: SessionDep, admin: AdminUser
) -> PoolPublic:
    pools.set_token(session, pool_id, token_id, member=False)
    return _membership(session, pool_id)
