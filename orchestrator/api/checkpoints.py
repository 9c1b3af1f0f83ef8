"""The worker API for checkpoints: short-lived URLs for the open attempt's lease, signed by the
bucket (gs://) or by this control plane for its own store."""

from __future__ import annotations

from fastapi import APIRouter

from orchestrator.db import commit
from orchestrator.errors import AUTHENTICATED, error_responses
from orchestrator.services import checkpoint_urls
from orchestrator.services.checkpoint_urls import (
    DownloadPlan,
    DownloadUrlsIn,
    LeaseScope,
    Listing,
    UploadPlan,
    UploadUrlsIn,
)
from orchestrator.services.leases import LeaseRequest

from .deps import CurrentWorkerToken, RuntimeDep, SessionDep

# Every call needs the open attempt's lease (409 for any other) and a store that signs URLs.
router = APIRouter(
    prefix="/api/v1/leases",
    tags=["workers"],
    responses={**AUTHENTICATED, **error_responses(409)},
)


def _scope(session: SessionDep, token: CurrentWorkerToken, lease_token: str) -> LeaseScope:
    scope = checkpoint_urls.lease_scope(session, token=token, lease_token=lease_token)
    # End the transaction (on SQLite, the write lock) before the store round trips.
    commit(session)
    return scope


@router.post("/checkpoint-urls", response_model=UploadPlan)
def upload_urls(
    data: UploadUrlsIn,
    session: SessionDep,
    runtime: RuntimeDep,
    token: CurrentWorkerToken,
) -> UploadPlan:
    """URLs for one checkpoint's files and its manifest (to be PUT last)."""
    scope = _scope(session, token, data.lease_token)  # the lease check comes first
    issuer = checkpoint_urls.issuer_for(runtime)
    return checkpoint_urls.upload_plan(
        issuer, scope, data, chunk_bytes=runtime.settings.checkpoint_chunk_bytes
    )


@router.post("/checkpoint-download", response_model=DownloadPlan, responses=error_responses(404))
def download_urls(
    data: DownloadUrlsIn,
    session: SessionDep,
    runtime: RuntimeDep,
    token: CurrentWorkerToken,
) -> DownloadPlan:
    """GET URLs for a complete checkpoint of this experiment or of one of its prerequisites."""
    scope = _scope(session, token, data.lease_token)
    return checkpoint_urls.download_plan(checkpoint_urls.issuer_for(runtime), scope, key=data.key)


@router.post("/checkpoint-list", response_model=Listing)
def list_checkpoints(
    data: LeaseRequest,
    session: SessionDep,
    runtime: RuntimeDep,
    token: CurrentWorkerToken,
) -> Listing:
    """The complete checkpoints of this lease's experiment, with their sizes."""
    scope = _scope(session, token, data.lease_token)
    checkpoint_urls.issuer_for(runtime)  # 422 where workers are not handed URLs
    return checkpoint_urls.listing(runtime.checkpoints, scope)
