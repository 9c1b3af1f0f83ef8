"""The worker API for checkpoints: short-lived URLs for the open attempt's lease, signed by the
bucket (gs://) or by this control plane for its own store."""

from __future__ import annotations

from fastapi import APIRouter

from orchestrator.db import session_scope
from orchestrator.errors import AUTHENTICATED, error_responses
from orchestrator.runtime import Runtime
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

from .deps import CurrentWorkerToken, RuntimeDep

# Every call needs the open attempt's lease (409 for any other) and a store that signs URLs.
router = APIRouter(
    prefix="/api/v1/leases",
    tags=["workers"],
    responses={**AUTHENTICATED, **error_responses(409)},
)


def _scope(runtime: Runtime, token: CurrentWorkerToken, lease_token: str) -> LeaseScope:
    """The lease check is this request's unit of work, committed before the store round trips
    (which hold no transaction)."""
    with session_scope(runtime.engine) as session:
        return checkpoint_urls.lease_scope(session, token=token, lease_token=lease_token)


@router.post("/checkpoint-urls", response_model=UploadPlan)
def upload_urls(
    data: UploadUrlsIn,
    runtime: RuntimeDep,
    token: CurrentWorkerToken,
) -> UploadPlan:
    """URLs for one checkpoint's files and its manifest (to be PUT last)."""
    scope = _scope(runtime, token, data.lease_token)  # the lease check comes first
    issuer = checkpoint_urls.issuer_for(runtime)
    return checkpoint_urls.upload_plan(
        issuer, scope, data, chunk_bytes=runtime.settings.checkpoint_chunk_bytes
    )


@router.post("/checkpoint-download", response_model=DownloadPlan, responses=error_responses(404))
def download_urls(
    data: DownloadUrlsIn,
    runtime: RuntimeDep,
    token: CurrentWorkerToken,
) -> DownloadPlan:
    """GET URLs for a complete checkpoint of this experiment or of one of its prerequisites."""
    scope = _scope(runtime, token, data.lease_token)  # the lease check comes first
    return checkpoint_urls.download_plan(checkpoint_urls.issuer_for(runtime), scope, key=data.key)


@router.post("/checkpoint-list", response_model=Listing)
def list_checkpoints(
    data: LeaseRequest,
    runtime: RuntimeDep,
    token: CurrentWorkerToken,
) -> Listing:
    """The complete checkpoints of this lease's experiment, with their sizes."""
    scope = _scope(runtime, token, data.lease_token)  # the lease check comes first
    checkpoint_urls.issuer_for(runtime)  # 422 where workers are not handed URLs
    return checkpoint_urls.listing(runtime.checkpoints, scope)
