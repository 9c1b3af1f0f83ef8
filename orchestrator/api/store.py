"""The control plane's own blob store over HTTP: ``PUT``/``GET /api/v1/store/<namespace>/<key>``.

No bearer token: each URL is signed by this control plane (``orchestrator/storage/signing.py``)
for one method and one object, and expires. Bodies are streamed to disk and replies streamed
from it. A PUT is checked against the size and sha256 its URL declares; with a
``Content-Range`` header it is one chunk of a resumable upload (``bytes a-b/N``), or a question
(``bytes */N``) answered ``308`` with ``Range: bytes=0-<last byte held>`` (or ``200`` once
complete), as GCS resumable sessions answer.
"""

from __future__ import annotations

import re
from functools import partial

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse

from orchestrator.errors import NotFound
from orchestrator.runtime import Runtime
from orchestrator.storage import CHECKPOINTS
from orchestrator.storage.blobs import BadKey, BlobError, BlobStore, ResumableUpload, TooLarge
from orchestrator.storage.checkpoints import MANIFEST_MAX_BYTES, commit_manifest, is_manifest_key
from orchestrator.storage.signing import STORE_PATH

from .deps import RuntimeDep

router = APIRouter(prefix=STORE_PATH, tags=["store"])

RESUME_INCOMPLETE = 308
_RANGE = re.compile(r"bytes (?:(\d+)-(\d+)|\*)/(\d+)")


def _store(runtime: Runtime, namespace: str) -> BlobStore:
    store = runtime.blobs.get(namespace)
    if store is None:
        raise NotFound(f"this control plane serves no store {namespace!r}")
    return store


def _expect_int(expect: dict[str, str], name: str) -> int:
    value = expect.get(name, "")
    if not value.isdigit():
        raise BlobError(f"this URL declares no {name}")
    return int(value)


async def _read_small(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"body is longer than {limit} bytes")
    return bytes(body)


def _incomplete(held: int) -> Response:
    headers = {"Range": f"bytes=0-{held - 1}"} if held else {}
    return Response(status_code=RESUME_INCOMPLETE, headers=headers)


async def _chunk(upload: ResumableUpload, content_range: str, request: Request) -> Response:
    match = _RANGE.fullmatch(content_range.strip())
    if match is None or int(match.group(3)) != upload.size:
        raise BlobError(
            f"Content-Range must be 'bytes FIRST-LAST/{upload.size}' or 'bytes */{upload.size}',"
            f" not {content_range!r}"
        )
    if match.group(1) is None:  # how much do you hold?
        if await anyio.to_thread.run_sync(upload.done):
            return Response(status_code=200)
        return _incomplete(await anyio.to_thread.run_sync(upload.held))
    first, last = int(match.group(1)), int(match.group(2))
    if last < first or last >= upload.size:
        raise BlobError(f"Content-Range {content_range!r} is outside 0-{upload.size - 1}")
    held = await upload.write(first, request.stream())
    if held < upload.size:
        return _incomplete(held)
    await anyio.to_thread.run_sync(upload.finish)
    return Response(status_code=200)


@router.put("/{namespace}/{key:path}", status_code=201)
async def put_object(namespace: str, key: str, request: Request, runtime: RuntimeDep) -> Response:
    """Store the body under ``key``, if it is what the signed URL declares."""
    expect = runtime.store_urls.verify("PUT", namespace, key, request.query_params)
    store = _store(runtime, namespace)
    if namespace == CHECKPOINTS and is_manifest_key(key):
        if "manifest" not in expect:
            raise BadKey("a checkpoint's manifest goes up only through its manifest URL")
        body = await _read_small(request, MANIFEST_MAX_BYTES)
        commit = partial(commit_manifest, store, key, body, expected_digest=expect["manifest"])
        await anyio.to_thread.run_sync(commit)
        return Response(status_code=201)
    size, sha256 = _expect_int(expect, "size"), expect.get("sha256", "")
    content_range = request.headers.get("content-range")
    if content_range is not None:
        if not sha256:
            raise BlobError("a chunked upload needs a URL that declares the sha256")
        # Resolving the key's path touches the disk: in a thread, like every step here.
        resumable = partial(store.resumable, key, size=size, sha256=sha256)
        upload = await anyio.to_thread.run_sync(resumable)
        return await _chunk(upload, content_range, request)
    await store.put_async_stream(
        key, request.stream(), expected_size=size, expected_sha256=sha256 or None
    )
    return Response(status_code=201)


@router.get("/{namespace}/{key:path}", response_class=FileResponse)
def get_object(namespace: str, key: str, request: Request, runtime: RuntimeDep) -> FileResponse:
    """Stream ``key`` from disk."""
    runtime.store_urls.verify("GET", namespace, key, request.query_params)
    path = _store(runtime, namespace).path(key)
    if not path.is_file():
        raise NotFound(f"{namespace}/{key} not found")
    return FileResponse(path, media_type="application/octet-stream")
