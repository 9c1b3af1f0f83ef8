"""Checkpoints on the control plane's own store (no bucket configured): the URLs it signs for
the open attempt's lease, and the check that makes a checkpoint visible.

Layout and root are those of the ``file://`` store (``worker/checkpoints/local.py``):
``<root>/<experiment>/<attempt>-<step>/<files…>`` + ``MANIFEST.json``, so ``Runtime.checkpoints``
(listing, retention, the budget) reads what workers uploaded here unchanged.

Each file URL binds the file's declared size and sha256: the store keeps a file only if its
bytes match. The manifest URL binds a digest of the whole plan (path, size, sha256 of every
file); the manifest is accepted only if it lists exactly those files, each already in place
at its size, and it is written last, so a checkpoint is visible only when complete.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from orchestrator.errors import Invalid
from orchestrator.runtime import Runtime
from orchestrator.services.checkpoint_urls import CheckpointFile, Transfer
from orchestrator.storage import CHECKPOINTS
from orchestrator.storage.blobs import BadKey, BlobStore, Mismatch
from orchestrator.storage.signing import StoreUrls
from worker.checkpoints.base import MANIFEST, CheckpointError, CheckpointRef, parse_manifest
from worker.checkpoints.local import LocalCheckpointStore

OCTET_STREAM = "application/octet-stream"
MANIFEST_MAX_BYTES = 8 * 1024 * 1024  # 10,000 files at ~200 bytes each, with room


def files_digest(entries: Iterable[tuple[str, int, str | None]]) -> str:
    """One hash for a checkpoint's file list (path, size, sha256), in any order."""
    canonical = json.dumps(sorted([path, size, sha] for path, size, sha in entries))
    return hashlib.sha256(canonical.encode()).hexdigest()


def is_manifest_key(key: str) -> bool:
    """``<experiment>/<attempt>-<step>/MANIFEST.json``: what only the manifest URL may write."""
    return key.count("/") == 2 and key.endswith(f"/{MANIFEST}")


class ControlPlaneUrls:
    def __init__(
        self, *, store: LocalCheckpointStore, blobs: BlobStore, urls: StoreUrls, base_url: str
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.urls = urls
        self.base_url = base_url.rstrip("/")

    @classmethod
    def of(cls, runtime: Runtime, *, base_url: str) -> ControlPlaneUrls:
        store = runtime.checkpoints
        assert isinstance(store, LocalCheckpointStore), store.url
        return cls(
            store=store,
            blobs=runtime.blobs[CHECKPOINTS],
            urls=runtime.store_urls,
            base_url=base_url,
        )

    def _url(self, method: str, key: str, **expect: str | int) -> str:
        return self.base_url + self.urls.sign(method, CHECKPOINTS, key, **expect)

    def begin(self, ref: CheckpointRef) -> None:
        # Manifest first: from here until the new manifest lands, the checkpoint is invisible.
        self.store.delete(ref)

    def put(self, ref: CheckpointRef, file: CheckpointFile, *, resumable: bool) -> Transfer:
        if file.sha256 is None:
            raise Invalid(
                f"files[].sha256 is required by this control plane's store ({file.path} has "
                "none): upgrade the worker"
            )
        url = self._url("PUT", f"{ref.key}/{file.path}", size=file.size, sha256=file.sha256)
        return Transfer(
            path=file.path, url=url, headers={"Content-Type": OCTET_STREAM}, resumable=resumable
        )

    def put_manifest(self, ref: CheckpointRef, files: list[CheckpointFile]) -> Transfer:
        digest = files_digest((f.path, f.size, f.sha256) for f in files)
        url = self._url("PUT", f"{ref.key}/{MANIFEST}", manifest=digest)
        return Transfer(path=MANIFEST, url=url, headers={"Content-Type": OCTET_STREAM})

    def get(self, ref: CheckpointRef, path: str) -> str:
        return self._url("GET", f"{ref.key}/{path}")

    def complete_files(self, ref: CheckpointRef) -> list[str] | None:
        path = self.blobs.path(f"{ref.key}/{MANIFEST}")
        if not path.is_file():
            return None
        manifest = parse_manifest(path.read_bytes(), where=str(path))
        return [entry["path"] for entry in manifest["files"]]


def _described(manifest: dict[str, Any]) -> tuple[CheckpointRef, list[tuple[str, int, str]]]:
    try:
        ref = CheckpointRef(
            step=int(manifest["step"]),
            attempt=int(manifest["attempt"]),
            experiment_id=str(manifest["experiment_id"]),
        )
        entries = [(str(e["path"]), int(e["size"]), str(e["sha256"])) for e in manifest["files"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise Mismatch(f"not a checkpoint manifest (missing or malformed {exc})") from None
    return ref, entries


def commit_manifest(blobs: BlobStore, key: str, body: bytes, *, expected_digest: str) -> None:
    """Write the manifest at ``key`` if it describes exactly the planned, uploaded files."""
    if not is_manifest_key(key):
        raise BadKey(f"not a checkpoint manifest key: {key!r}")
    folder = key.rsplit("/", 1)[0]
    try:
        ref = CheckpointRef.from_key(folder)
        manifest = parse_manifest(body, where=key)
    except CheckpointError as exc:
        raise Mismatch(str(exc)) from None
    described, entries = _described(manifest)
    if described != ref:
        raise Mismatch(f"the manifest describes checkpoint {described.key}, not {ref.key}")
    if files_digest(entries) != expected_digest:
        raise Mismatch("the manifest lists other files (or sizes, or hashes) than the upload plan")
    for path, size, _ in entries:
        if blobs.size(f"{folder}/{path}") != size:
            raise Mismatch(f"checkpoint file {path} has not been uploaded (completely)")
    blobs.put_stream(key, [body])
