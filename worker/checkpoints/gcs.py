"""Checkpoints in a Google Cloud Storage bucket, through google-cloud-storage.

The control plane uses this store (retention, and the bucket behind the signed URLs it hands
to workers); so can a worker that holds its own key. Layout:
``gs://<bucket>/<prefix>/<experiment>/<attempt>-<step>/<files…>`` plus ``MANIFEST.json``,
written last, so a checkpoint whose upload died midway is never listed.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from urllib.parse import urlparse

from google.api_core.exceptions import NotFound
from google.cloud import storage

from worker.checkpoints.base import (
    MANIFEST,
    CheckpointError,
    CheckpointRef,
    build_manifest,
    parse_manifest,
    verify_file,
)

# GCS wants resumable chunks in multiples of 256 KiB.
CHUNK_UNIT = 256 * 1024
DEFAULT_CHUNK_BYTES = 32 * CHUNK_UNIT
OCTET_STREAM = "application/octet-stream"


class GCSCheckpointStore:
    def __init__(
        self, *, bucket: storage.Bucket, prefix: str = "", chunk_bytes: int = DEFAULT_CHUNK_BYTES
    ) -> None:
        if chunk_bytes <= 0 or chunk_bytes % CHUNK_UNIT:
            raise ValueError(f"chunk_bytes must be a positive multiple of {CHUNK_UNIT}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.chunk_bytes = chunk_bytes
        self.url = f"gs://{bucket.name}/{self.prefix}".rstrip("/")

    @classmethod
    def from_url(cls, url: str) -> GCSCheckpointStore:
        """``gs://bucket/prefix`` with the environment's credentials (or the emulator's)."""
        parsed = urlparse(url)
        if parsed.scheme != "gs" or not parsed.netloc:
            raise CheckpointError(f"not a GCS URL: {url!r} (use gs://bucket/prefix)")
        return cls(bucket=storage.Client().bucket(parsed.netloc), prefix=parsed.path)

    def _name(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def _base(self, ref: CheckpointRef) -> str:
        return self._name(f"{ref.key}/")

    def object_name(self, ref: CheckpointRef, path: str) -> str:
        """The object holding ``path`` (relative, POSIX) of checkpoint ``ref``."""
        return self._base(ref) + path

    def objects(self, ref: CheckpointRef) -> dict[str, int]:
        """Every object of ``ref`` (the manifest included): relative path -> size in bytes."""
        base = self._base(ref)
        return {
            blob.name[len(base) :]: int(blob.size or 0)
            for blob in self.bucket.client.list_blobs(self.bucket, prefix=base)
        }

    def upload(self, *, experiment_id: str, attempt: int, step: int, source: Path) -> CheckpointRef:
        ref = CheckpointRef(step=step, attempt=attempt, experiment_id=experiment_id)
        manifest = build_manifest(ref, source)
        for entry in manifest["files"]:
            # The client sends files above 8 MiB as resumable uploads, in chunks of this size:
            # a dropped connection costs one chunk, not the file.
            blob = self.bucket.blob(
                self.object_name(ref, entry["path"]), chunk_size=self.chunk_bytes
            )
            blob.upload_from_filename(str(source / entry["path"]), content_type=OCTET_STREAM)
        self.bucket.blob(self.object_name(ref, MANIFEST)).upload_from_string(
            json.dumps(manifest, indent=1), content_type="application/json"
        )
        return ref

    def list(self, *, experiment_id: str) -> list[CheckpointRef]:
        folder = self._name(f"{experiment_id}/")
        manifests = self.bucket.client.list_blobs(
            self.bucket, prefix=folder, match_glob=f"{folder}*/{MANIFEST}"
        )
        leaves = (blob.name[len(folder) :].split("/", 1)[0] for blob in manifests)
        return sorted(CheckpointRef.from_key(f"{experiment_id}/{leaf}") for leaf in leaves)

    def download(self, ref: CheckpointRef, dest: Path) -> Path:
        where = f"{self.url}/{ref.key}"
        try:
            raw = self.bucket.blob(self.object_name(ref, MANIFEST)).download_as_bytes()
        except NotFound:
            raise CheckpointError(f"checkpoint {ref.key} not found in {self.url}") from None
        manifest = parse_manifest(raw, where=where)
        dest.mkdir(parents=True, exist_ok=True)
        for entry in manifest["files"]:
            out = dest / entry["path"]
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.bucket.blob(self.object_name(ref, entry["path"])).download_to_filename(
                    str(out)
                )
            except NotFound:
                raise CheckpointError(
                    f"checkpoint file {entry['path']} is missing from {where}"
                ) from None
            verify_file(out, entry)
        return dest

    def delete(self, ref: CheckpointRef) -> None:
        # The manifest first: from then on the checkpoint is invisible, even if the rest fails.
        with contextlib.suppress(NotFound):
            self.bucket.delete_blob(self.object_name(ref, MANIFEST))
        rest = [self.object_name(ref, path) for path in self.objects(ref)]
        self.bucket.delete_blobs(rest, on_error=lambda blob: None)  # already gone is fine

    def size_bytes(self, ref: CheckpointRef) -> int:
        return sum(size for path, size in self.objects(ref).items() if path != MANIFEST)
