"""Code bundles: users upload a working directory as a .tar.gz, workers download it."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from orchestrator.bundles import (
    MAX_EXPANSION,
    BundleStore,
    Incoming,
    Stored,
    check_archive,
    parse_digest,
)
from orchestrator.bundles import TooLarge as BodyTooLarge
from orchestrator.errors import (
    AUTHENTICATED,
    Forbidden,
    Invalid,
    NotFound,
    TooLarge,
    error_responses,
)
from orchestrator.services import leases

from .deps import CurrentUser, CurrentWorkerToken, ReadSessionDep, RuntimeDep

router = APIRouter(prefix="/api/v1", tags=["bundles"], responses=AUTHENTICATED)


class BundleOut(BaseModel):
    digest: str
    size: int


def _too_large(max_mb: int) -> TooLarge:
    return TooLarge(
        f"bundle over the {max_mb} MB cap (BATON_BUNDLE_MAX_MB): leave data and build outputs "
        "out (.batonignore), or fetch them in the job"
    )


def _keep(store: BundleStore, incoming: Incoming) -> Stored:
    incoming.close()
    check_archive(incoming.path, max_unpacked=incoming.size * MAX_EXPANSION)
    return store.add(incoming)


@router.post(
    "/bundles",
    response_model=BundleOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "already stored (the same bytes were uploaded before)"},
        413: {"description": "over BATON_BUNDLE_MAX_MB"},
        422: {"description": "not a .tar.gz, or a member with an unsafe path or type"},
    },
)
async def upload(
    request: Request, response: Response, runtime: RuntimeDep, user: CurrentUser
) -> BundleOut:
    """The raw body is a .tar.gz of a working directory; stored under its sha256, streamed."""
    max_mb = runtime.settings.bundle_max_mb
    limit = runtime.settings.bundle_max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(max_mb)  # before reading a byte of it
    store = BundleStore.from_settings(runtime.settings)
    # Every touch of the disk goes to a thread: a slow disk must not stall the event loop.
    incoming = await run_in_threadpool(store.receive, limit=limit)
    try:
        async for chunk in request.stream():
            await run_in_threadpool(incoming.write, chunk)
        if incoming.size == 0:
            raise Invalid("empty body: send the .tar.gz as the request body")
        stored = await run_in_threadpool(_keep, store, incoming)
    except BodyTooLarge:
        raise _too_large(max_mb) from None
    finally:
        await run_in_threadpool(incoming.discard)  # after _keep the file is gone: a no-op
    if not stored.created:
        response.status_code = status.HTTP_200_OK
    return BundleOut(digest=stored.digest, size=stored.size)


@router.get(
    "/bundles/{digest}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/gzip": {}}}, **error_responses(404)},
)
def download(
    digest: str, session: ReadSessionDep, runtime: RuntimeDep, token: CurrentWorkerToken
) -> StreamingResponse:
    """For workers: only while one of this token's workers runs an experiment using it."""
    try:
        parse_digest(digest)
    except ValueError as exc:
        raise NotFound(str(exc)) from None
    if not leases.bundle_leased(session, token=token, digest=digest):
        raise Forbidden(f"no open lease of this worker token runs an experiment with {digest}")
    store = BundleStore.from_settings(runtime.settings)
    size = store.size(digest)
    if size is None:
        raise NotFound(f"bundle {digest} is not stored on this control plane")
    return StreamingResponse(
        store.chunks(digest),
        media_type="application/gzip",
        headers={"Content-Length": str(size)},
    )
