"""Checkpoints through short-lived signed URLs from the control plane: the notebook holds no
store credentials, only its worker token, and only the open attempt's lease gets URLs.

A Grant whose ``checkpoint_url`` starts with ``baton-signed:`` selects this store: the URLs
point at a GCS bucket (``baton-signed:gs://…``) or at the control plane's own store
(``baton-signed:control-plane``); the protocol is the same. Each upload declares every file's
path, size and sha256 and gets one URL per file (chunked, resumable uploads for files above
``chunk_bytes``) plus one for the manifest, which is PUT last; downloads get GET URLs and
verify size and sha256 of every file against the manifest. Plain httpx: no Google library.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx

from worker.checkpoints.base import (
    CheckpointError,
    CheckpointRef,
    CheckpointStore,
    build_manifest,
    open_store,
    parse_manifest,
    verify_file,
)
from worker.client import ApiError, Unavailable, WorkerClient

log = logging.getLogger(__name__)

SIGNED_PREFIX = "baton-signed:"
UPLOAD_URLS = "/api/v1/leases/checkpoint-urls"
DOWNLOAD_URLS = "/api/v1/leases/checkpoint-download"
LISTING = "/api/v1/leases/checkpoint-list"
TRIES = 5
RESUMABLE_DONE = (200, 201)
RESUME_INCOMPLETE = 308
BLOCK = 1 << 20
T = TypeVar("T")


class _Transient(Exception):
    """A failure worth another try: network trouble, 5xx, 429."""


def _retrying(action: Callable[[], T], *, what: str) -> T:
    delay, tries = 0.5, 1
    while True:
        try:
            return action()
        except (_Transient, Unavailable, httpx.TransportError) as exc:
            if tries >= TRIES:
                raise CheckpointError(f"{what}: gave up after {TRIES} tries ({exc})") from exc
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            time.sleep(delay)
            delay, tries = delay * 2, tries + 1


def _check(response: httpx.Response, *, what: str, ok: tuple[int, ...] = (200, 201)) -> None:
    if response.status_code in ok:
        return
    if response.status_code >= 500 or response.status_code == 429:
        raise _Transient(f"HTTP {response.status_code}")
    detail = response.read()[:300].decode(errors="replace")
    raise CheckpointError(f"{what}: HTTP {response.status_code}: {detail}")


def _received(response: httpx.Response) -> int:
    """Bytes a resumable session holds, from its 308 reply (``Range: bytes=0-N``)."""
    match = re.fullmatch(r"bytes=0-(\d+)", response.headers.get("range", ""))
    return int(match.group(1)) + 1 if match else 0


class SignedUrlCheckpointStore:
    def __init__(self, *, url: str, client: WorkerClient, lease_token: str) -> None:
        self.url = url
        self._api = client
        self._lease_token = lease_token

    def _ask(self, path: str, **body: Any) -> dict[str, Any]:
        payload = {"lease_token": self._lease_token, **body}

        def call() -> dict[str, Any]:
            reply: dict[str, Any] = self._api.request(
                "POST", path, json=payload, retry=False
            ).json()
            return reply

        try:
            return _retrying(call, what=path)
        except ApiError as exc:  # 4xx, 409 included: no URLs for a lease that is not current
            raise CheckpointError(f"{path}: the control plane refused: {exc}") from exc

    # --- upload ---------------------------------------------------------------------------

    def upload(self, *, experiment_id: str, attempt: int, step: int, source: Path) -> CheckpointRef:
        ref = CheckpointRef(step=step, attempt=attempt, experiment_id=experiment_id)
        manifest = build_manifest(ref, source)
        files = [{k: e[k] for k in ("path", "size", "sha256")} for e in manifest["files"]]
        plan = self._ask(UPLOAD_URLS, step=step, files=files)
        if plan["key"] != ref.key:
            raise CheckpointError(f"step {step} was placed at {plan['key']}, not at {ref.key}")
        with _bucket_client() as http:
            for target in plan["files"]:
                path = source / target["path"]
                if target["resumable"]:
                    _put_resumable(http, target, path, chunk_bytes=int(plan["chunk_bytes"]))
                else:
                    size = path.stat().st_size
                    _put(http, target, length=size, body=partial(_file_body, path, 0, size))
            raw = json.dumps(manifest, indent=1).encode()
            _put(http, plan["manifest"], length=len(raw), body=lambda: [raw])  # last
        return ref

    # --- download and listing -------------------------------------------------------------

    def download(self, ref: CheckpointRef, dest: Path) -> Path:
        plan = self._ask(DOWNLOAD_URLS, key=ref.key)
        with _bucket_client() as http:
            raw = _get_bytes(http, plan["manifest_url"], what=f"manifest of {ref.key}")
            manifest = parse_manifest(raw, where=ref.key)
            dest.mkdir(parents=True, exist_ok=True)
            for entry in manifest["files"]:
                url = plan["files"].get(entry["path"])
                if url is None:
                    raise CheckpointError(
                        f"checkpoint file {entry['path']} is missing from {ref.key}"
                    )
                out = dest / entry["path"]
                out.parent.mkdir(parents=True, exist_ok=True)
                _fetch(http, url, out, what=f"download of {entry['path']}")
                verify_file(out, entry)
        return dest

    def _listing(self, experiment_id: str) -> list[dict[str, Any]]:
        reply = self._ask(LISTING)
        if str(reply["experiment_id"]) != experiment_id:
            raise CheckpointError(f"this lease covers experiment {reply['experiment_id']} only")
        checkpoints: list[dict[str, Any]] = reply["checkpoints"]
        return checkpoints

    def list(self, *, experiment_id: str) -> list[CheckpointRef]:
        return sorted(CheckpointRef.from_key(c["key"]) for c in self._listing(experiment_id))

    def size_bytes(self, ref: CheckpointRef) -> int:
        for item in self._listing(ref.experiment_id):
            if item["key"] == ref.key:
                return int(item["size_bytes"])
        raise CheckpointError(f"checkpoint {ref.key} not found")

    def delete(self, ref: CheckpointRef) -> None:
        raise CheckpointError(
            "workers do not delete checkpoints: the control plane's retention does"
        )


def _bucket_client() -> httpx.Client:
    # No worker token here: it must never reach the bucket. Signed URLs carry their own auth.
    return httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0))


def _file_body(path: Path, offset: int, length: int) -> Iterator[bytes]:
    """``length`` bytes of ``path`` from ``offset``, read a block at a time: a chunk is never
    whole in memory (nor kept alive by a response's reference cycles until the next GC)."""
    with path.open("rb") as fh:
        fh.seek(offset)
        left = length
        while left > 0:
            block = fh.read(min(BLOCK, left))
            if not block:
                raise CheckpointError(f"{path} shrank while it was being uploaded")
            left -= len(block)
            yield block


def _put(
    http: httpx.Client, target: dict[str, Any], *, length: int, body: Callable[[], Iterable[bytes]]
) -> None:
    """PUT ``length`` bytes from ``body()`` (called again for each try)."""
    what = f"upload of {target['path']}"
    headers = {**target["headers"], "Content-Length": str(length)}

    def send() -> None:
        _check(http.put(target["url"], content=body(), headers=headers), what=what)

    _retrying(send, what=what)


def _put_resumable(
    http: httpx.Client, target: dict[str, Any], path: Path, *, chunk_bytes: int
) -> None:
    """Send ``path`` in chunks to its resumable session; after a failed chunk, ask the session
    how much it holds and go on from there."""
    size = path.stat().st_size
    what = f"resumable upload of {target['path']}"
    ok = (*RESUMABLE_DONE, RESUME_INCOMPLETE)

    def send_chunk(offset: int) -> httpx.Response:
        length = min(chunk_bytes, size - offset)
        headers = {
            "Content-Range": f"bytes {offset}-{offset + length - 1}/{size}",
            "Content-Length": str(length),
        }
        return http.put(target["url"], content=_file_body(path, offset, length), headers=headers)

    def status() -> httpx.Response:
        response = http.put(
            target["url"], content=b"", headers={"Content-Range": f"bytes */{size}"}
        )
        _check(response, what=what, ok=ok)
        return response

    offset, failures = 0, 0
    while True:
        try:
            response = send_chunk(offset)
            _check(response, what=what, ok=ok)
        except (_Transient, httpx.TransportError) as exc:
            failures += 1
            if failures >= TRIES:
                raise CheckpointError(
                    f"{what}: gave up after {TRIES} failed chunks ({exc})"
                ) from exc
            log.warning("%s: chunk at byte %s failed (%s); asking the session", what, offset, exc)
            response = _retrying(status, what=f"{what} (status)")
        if response.status_code in RESUMABLE_DONE:
            return
        offset = _received(response)


def _get_bytes(http: httpx.Client, url: str, *, what: str) -> bytes:
    def get() -> bytes:
        response = http.get(url)
        _check(response, what=what, ok=(200,))
        return response.content

    return _retrying(get, what=what)


def _fetch(http: httpx.Client, url: str, out: Path, *, what: str) -> None:
    def get() -> None:
        with http.stream("GET", url) as response, out.open("wb") as fh:
            _check(response, what=what, ok=(200,))
            for block in response.iter_bytes(1 << 20):
                fh.write(block)

    _retrying(get, what=what)


def open_attempt_store(url: str, *, client: WorkerClient, lease_token: str) -> CheckpointStore:
    """The store a Grant names: signed URLs through the control plane, or a direct URL."""
    if url.startswith(SIGNED_PREFIX):
        return SignedUrlCheckpointStore(url=url, client=client, lease_token=lease_token)
    return open_store(url)
