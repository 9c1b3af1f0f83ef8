"""Short-lived V4 signed URLs for workers' checkpoints, so notebooks never hold a bucket key.

Only the open attempt's lease gets URLs: uploads under its own ``<experiment>/<attempt>-<step>``,
downloads of its experiment's checkpoints and of its prerequisites'. Files above
``BATON_CHECKPOINT_CHUNK_BYTES`` get a resumable-upload session instead of a signed PUT (the
session URI is itself the credential, valid for a week, and survives dropped connections).
The control plane signs with the service-account key named by GOOGLE_APPLICATION_CREDENTIALS.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from datetime import timedelta

from google.oauth2 import service_account
from pydantic import BaseModel, Field, field_validator
from sqlmodel import Session

from orchestrator.errors import Forbidden, Invalid, NotFound
from orchestrator.models import WorkerToken
from orchestrator.runtime import Runtime
from orchestrator.services import dependencies
from orchestrator.services.leases import LeaseRequest, current_lease
from orchestrator.settings import Settings
from worker.checkpoints.base import MANIFEST, CheckpointError, CheckpointRef
from worker.checkpoints.gcs import OCTET_STREAM, GCSCheckpointStore

MAX_FILES = 10_000


class CheckpointFile(BaseModel):
    path: str = Field(min_length=1, max_length=1024)
    size: int = Field(ge=0)

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        parts = value.split("/")
        if "\\" in value or any(p in ("", ".", "..") for p in parts) or value == MANIFEST:
            raise ValueError(f"not a plain relative path inside a checkpoint: {value!r}")
        return value


class UploadUrlsIn(LeaseRequest):
    step: int = Field(ge=0)
    files: list[CheckpointFile] = Field(max_length=MAX_FILES)


class Transfer(BaseModel):
    """Where one file goes: a signed PUT (send ``headers``), or a resumable session URI."""

    path: str
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    resumable: bool = False


class UploadPlan(BaseModel):
    key: str
    chunk_bytes: int
    files: list[Transfer]
    manifest: Transfer


class DownloadUrlsIn(LeaseRequest):
    key: str = Field(min_length=1, max_length=512)


class DownloadPlan(BaseModel):
    key: str
    manifest_url: str
    files: dict[str, str]


class CheckpointInfo(BaseModel):
    key: str
    step: int
    size_bytes: int


class Listing(BaseModel):
    experiment_id: int
    checkpoints: list[CheckpointInfo]


@dataclass(frozen=True)
class LeaseScope:
    experiment_id: int
    attempt: int
    readable: frozenset[str]  # experiments whose checkpoints the attempt may read


def lease_scope(session: Session, *, token: WorkerToken, lease_token: str) -> LeaseScope:
    """What the open attempt holding ``lease_token`` may touch; 409 for any other token."""
    experiment, attempt = current_lease(session, token=token, lease_token=lease_token)
    assert experiment.id is not None
    prerequisites = dependencies.prerequisites(session, experiment.id)
    return LeaseScope(
        experiment_id=experiment.id,
        attempt=attempt.number,
        readable=frozenset(str(e.id) for e in [experiment, *prerequisites]),
    )


@functools.cache
def _signing_credentials(path: str) -> service_account.Credentials:
    return service_account.Credentials.from_service_account_file(path)


class Signer:
    def __init__(self, *, store: GCSCheckpointStore, settings: Settings) -> None:
        self.store = store
        self.expires = timedelta(seconds=settings.checkpoint_url_seconds)
        self.chunk_bytes = settings.checkpoint_chunk_bytes
        key_file = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if not key_file:
            raise RuntimeError(
                "signed checkpoint URLs need a service-account key file in "
                "GOOGLE_APPLICATION_CREDENTIALS"
            )
        self.credentials = _signing_credentials(key_file)

    @classmethod
    def of(cls, runtime: Runtime) -> Signer:
        settings = runtime.settings
        store = runtime.checkpoints
        if not (settings.checkpoint_signed_urls and isinstance(store, GCSCheckpointStore)):
            raise Invalid(f"this control plane hands out no checkpoint URLs (store {store.url})")
        return cls(store=store, settings=settings)

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

    def _put(self, ref: CheckpointRef, path: str, *, content_type: str) -> Transfer:
        url = self._sign(ref, path, method="PUT", content_type=content_type)
        return Transfer(path=path, url=url, headers={"Content-Type": content_type})

    def _resumable(self, ref: CheckpointRef, path: str, *, size: int) -> Transfer:
        blob = self.store.bucket.blob(self.store.object_name(ref, path))
        session: str = blob.create_resumable_upload_session(content_type=OCTET_STREAM, size=size)
        return Transfer(path=path, url=session, resumable=True)

    def upload_plan(self, scope: LeaseScope, data: UploadUrlsIn) -> UploadPlan:
        ref = CheckpointRef(
            step=data.step, attempt=scope.attempt, experiment_id=str(scope.experiment_id)
        )
        files = [
            self._resumable(ref, f.path, size=f.size)
            if f.size > self.chunk_bytes
            else self._put(ref, f.path, content_type=OCTET_STREAM)
            for f in data.files
        ]
        # Not application/json: gcp-storage-emulator would parse such a PUT body as JSON.
        manifest = self._put(ref, MANIFEST, content_type=OCTET_STREAM)
        return UploadPlan(key=ref.key, chunk_bytes=self.chunk_bytes, files=files, manifest=manifest)

    def download_plan(self, scope: LeaseScope, *, key: str) -> DownloadPlan:
        try:
            ref = CheckpointRef.from_key(key)
        except CheckpointError as exc:
            raise Invalid(str(exc)) from None
        if ref.experiment_id not in scope.readable:
            raise Forbidden(f"checkpoint {key} belongs to an experiment this lease cannot read")
        objects = self.store.objects(ref)
        if MANIFEST not in objects:
            raise NotFound(f"checkpoint {key} not found (or not complete)")
        return DownloadPlan(
            key=key,
            manifest_url=self._sign(ref, MANIFEST, method="GET"),
            files={p: self._sign(ref, p, method="GET") for p in objects if p != MANIFEST},
        )

    def listing(self, scope: LeaseScope) -> Listing:
        refs = self.store.list(experiment_id=str(scope.experiment_id))
        return Listing(
            experiment_id=scope.experiment_id,
            checkpoints=[
                CheckpointInfo(key=r.key, step=r.step, size_bytes=self.store.size_bytes(r))
                for r in refs
            ],
        )
