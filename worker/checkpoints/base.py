"""The checkpoint store contract shared by every backend."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

MANIFEST = "MANIFEST.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or corrupt."""


@dataclass(frozen=True, order=True)
class CheckpointRef:
    """One complete checkpoint: ``<experiment>/<attempt>-<step>`` in its store."""

    step: int
    attempt: int
    experiment_id: str

    @property
    def key(self) -> str:
        return f"{self.experiment_id}/{self.attempt:04d}-{self.step:012d}"

    @classmethod
    def from_key(cls, key: str) -> CheckpointRef:
        try:
            experiment_id, leaf = key.rsplit("/", 1)
            attempt, step = leaf.split("-")
            return cls(step=int(step), attempt=int(attempt), experiment_id=experiment_id)
        except ValueError as exc:
            raise CheckpointError(f"not a checkpoint key: {key!r}") from exc


class CheckpointStore(Protocol):
    """Where checkpoints live. A checkpoint is visible only once its manifest is written."""

    url: str

    def upload(self, *, experiment_id: str, attempt: int, step: int, source: Path) -> CheckpointRef:
        """Copy every file under ``source``; write the manifest last."""
        ...

    def list(self, *, experiment_id: str) -> list[CheckpointRef]:
        """Complete checkpoints of one experiment, oldest step first."""
        ...

    def download(self, ref: CheckpointRef, dest: Path) -> Path:
        """Fetch ``ref`` into ``dest``, verifying size and hash of every file."""
        ...

    def delete(self, ref: CheckpointRef) -> None:
        """Remove ``ref``: manifest first, so a half-deleted checkpoint is never visible."""
        ...

    def size_bytes(self, ref: CheckpointRef) -> int:
        """Total size of the files of ``ref``."""
        ...


def latest(store: CheckpointStore, *, experiment_id: str) -> CheckpointRef | None:
    refs = store.list(experiment_id=experiment_id)
    return refs[-1] if refs else None


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_manifest(ref: CheckpointRef, source: Path) -> dict[str, Any]:
    """Describe every regular file under ``source`` (relative path, size, sha256)."""
    if (source / MANIFEST).exists():
        # The store writes its own manifest there; the job's file would be overwritten.
        raise CheckpointError(f"a checkpoint may not contain a top-level {MANIFEST} (reserved)")
    files = [
        {
            "path": p.relative_to(source).as_posix(),
            "size": p.stat().st_size,
            "sha256": file_digest(p),
        }
        for p in sorted(source.rglob("*"))
        if p.is_file()
    ]
    return {
        "experiment_id": ref.experiment_id,
        "attempt": ref.attempt,
        "step": ref.step,
        "files": files,
    }


def verify_file(path: Path, entry: dict[str, Any]) -> None:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {entry['path']} is missing")
    if path.stat().st_size != entry["size"] or file_digest(path) != entry["sha256"]:
        raise CheckpointError(f"checkpoint file {entry['path']} is corrupt (size or hash differ)")


def parse_manifest(raw: bytes | str, *, where: str) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads(raw)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint manifest at {where} is not valid JSON") from exc
    return manifest


def local_path(url: str) -> Path | None:
    """The directory a ``file:///path`` (or plain path) store URL names; None for others."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(url) if not parsed.scheme else None


def open_store(url: str) -> CheckpointStore:
    """Open the store named by ``url``: ``file:///path`` or a plain path, or ``gs://bucket/prefix``."""
    root = local_path(url)
    if root is not None:
        from worker.checkpoints.local import LocalCheckpointStore

        return LocalCheckpointStore(root)
    parsed = urlparse(url)
    if parsed.scheme == "gs":
        from worker.checkpoints.gcs import GCSCheckpointStore

        store: CheckpointStore = GCSCheckpointStore.from_url(url)
        return store
    raise CheckpointError(f"unsupported checkpoint store URL {url!r} (use file:// or gs://)")
