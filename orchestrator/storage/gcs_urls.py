"""Checkpoint URLs for a GCS bucket: V4 signed URLs, and resumable-upload sessions for big
files (the session URI is itself the credential, valid for a week, and survives dropped
connections). The control plane signs with the service-account key named by
GOOGLE_APPLICATION_CREDENTIALS."""

from __future__ import annotations

import functools
import os
from datetime import timedelta

from google.oauth2 import service_account

from orchestrator.errors import Invalid
from orchestrator.runtime import Runtime
from orchestrator.services.checkpoint_urls import CheckpointFile, Transfer
from worker.checkpoints.base import MANIFEST, CheckpointRef
from worker.checkpoints.gcs import OCTET_STREAM, GCSCheckpointStore


@functools.cache
def _signing_credentials(path: str) -> service_account.Credentials:
    return service_account.Credentials.from_service_account_file(path)


class GcsUrls:
    def __init__(self, *, store: GCSCheckpointStore, seconds: int) -> None:
        self.store = store
        self.expires = timedelta(seconds=seconds)
        key_file = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if not key_file:
            raise RuntimeError(
                "signed checkpoint URLs need a service-account key file in "
                "GOOGLE_APPLICATION_CREDENTIALS"
            )
        self.credentials = _signing_credentials(key_file)

    @classmethod
    def of(cls, runtime: Runtime) -> GcsUrls:
        store = runtime.checkpoints
        if not isinstance(store, GCSCheckpointStore):
            raise Invalid(f"this control plane's checkpoints are not in a bucket ({store.url})")
        return cls(store=store, seconds=runtime.settings.checkpoint_url_seconds)

    def _sign(
        self, ref: CheckpointRef, path: str, *, method: str, content_type: str | None = None
    ) -> str:
        blob = self.store.bucket.blob(self.store.object_name(ref, path))
        url: str = blob.generate_signed_url(
            version="v4",
            expiration=self.expires,
            method=method,
            content_type=content_type,
            credentials=self.credentials,
        )
        return url

    def _signed_put(self, ref: CheckpointRef, path: str) -> Transfer:
        url = self._sign(ref, path, method="PUT", content_type=OCTET_STREAM)
        return Transfer(path=path, url=url, headers={"Content-Type": OCTET_STREAM})

    def begin(self, ref: CheckpointRef) -> None:
        """Nothing: objects are replaced whole, and the manifest still comes last."""

    def put(self, ref: CheckpointRef, file: CheckpointFile, *, resumable: bool) -> Transfer:
        if not resumable:
            return self._signed_put(ref, file.path)
        blob = self.store.bucket.blob(self.store.object_name(ref, file.path))
        session: str = blob.create_resumable_upload_session(
            content_type=OCTET_STREAM, size=file.size
        )
        return Transfer(path=file.path, url=session, resumable=True)

    def put_manifest(self, ref: CheckpointRef, files: list[CheckpointFile]) -> Transfer:
        # Not application/json: gcp-storage-emulator would parse such a PUT body as JSON.
        return self._signed_put(ref, MANIFEST)

    def get(self, ref: CheckpointRef, path: str) -> str:
        return self._sign(ref, path, method="GET")

    def complete_files(self, ref: CheckpointRef) -> list[str] | None:
        objects = self.store.objects(ref)
        if MANIFEST not in objects:
            return None
        return [path for path in objects if path != MANIFEST]
