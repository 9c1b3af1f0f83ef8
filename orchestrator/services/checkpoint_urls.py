"""Short-lived URLs for workers' checkpoints, so notebooks hold no store credentials.

Only the open attempt's lease gets URLs: uploads under its own ``<experiment>/<attempt>-<step>``,
downloads of its experiment's checkpoints and of its prerequisites'. Where the bytes go is up
to a ``UrlIssuer``:

- no bucket configured (a ``file://`` store; the default): the control plane's own store
  (``orchestrator/storage/checkpoints.py``), URLs it signs itself;
- ``gs://``: V4 signed URLs of the bucket (``orchestrator/storage/gcs_urls.py``), imported
  only then, so a control plane without a bucket never loads Google's libraries.

Files above ``BATON_CHECKPOINT_CHUNK_BYTES`` go up in chunks (``resumable``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, Field, field_validator
from sqlmodel import Session

from orchestrator.errors import Forbidden, Invalid, NotFound
from orchestrator.models import WorkerToken
from orchestrator.runtime import Runtime
from orchestrator.services import dependencies
from orchestrator.services.leases import LeaseRequest, current_lease
from orchestrator.settings import CONTROL_PLANE_STORE
from orchestrator.urls import public_url
from worker.checkpoints.base import (
    MANIFEST,
    CheckpointError,
    CheckpointRef,
    CheckpointStore,
    check_relative,
)
from worker.checkpoints.signed import SIGNED_PREFIX

MAX_FILES = 10_000


class CheckpointFile(BaseModel):
    path: str = Field(min_length=1, max_length=1024)
    size: int = Field(ge=0)
    # The control plane's own store checks every file against it (a bucket does not).
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value == MANIFEST:
            raise ValueError(f"{MANIFEST} is the store's own file, not a checkpoint file")
        return check_relative(value)


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


class UrlIssuer(Protocol):
    """Signs the URLs of one checkpoint store."""

    def begin(self, ref: CheckpointRef) -> None:
        """An upload of ``ref`` starts: whatever an earlier try left there must not count."""
        ...

    def put(self, ref: CheckpointRef, file: CheckpointFile, *, resumable: bool) -> Transfer: ...

    def put_manifest(self, ref: CheckpointRef, files: list[CheckpointFile]) -> Transfer: ...

    def get(self, ref: CheckpointRef, path: str) -> str: ...

    def complete_files(self, ref: CheckpointRef) -> list[str] | None:
        """The files of ``ref`` if it is complete (its manifest is there), else None."""
        ...


def issuer_for(runtime: Runtime) -> UrlIssuer:
    """The issuer of the store this control plane's Grants name."""
    settings = runtime.settings
    url = settings.worker_checkpoint_url
    if url == CONTROL_PLANE_STORE:
        from orchestrator.storage.checkpoints import ControlPlaneUrls

        return ControlPlaneUrls.of(runtime, base_url=public_url(settings))
    if url.startswith(SIGNED_PREFIX + "gs://"):
        from orchestrator.storage.gcs_urls import GcsUrls

        return GcsUrls.of(runtime)
    raise Invalid(f"this control plane hands out no checkpoint URLs (workers use {url})")


def upload_plan(
    issuer: UrlIssuer, scope: LeaseScope, data: UploadUrlsIn, *, chunk_bytes: int
) -> UploadPlan:
    ref = CheckpointRef(
        step=data.step, attempt=scope.attempt, experiment_id=str(scope.experiment_id)
    )
    issuer.begin(ref)
    files = [issuer.put(ref, f, resumable=f.size > chunk_bytes) for f in data.files]
    return UploadPlan(
        key=ref.key,
        chunk_bytes=chunk_bytes,
        files=files,
        manifest=issuer.put_manifest(ref, data.files),
    )


def download_plan(issuer: UrlIssuer, scope: LeaseScope, *, key: str) -> DownloadPlan:
    try:
        ref = CheckpointRef.from_key(key)
    except CheckpointError as exc:
        raise Invalid(str(exc)) from None
    if ref.experiment_id not in scope.readable:
        raise Forbidden(f"checkpoint {key} belongs to an experiment this lease cannot read")
    files = issuer.complete_files(ref)
    if files is None:
        raise NotFound(f"checkpoint {key} not found (or not complete)")
    return DownloadPlan(
        key=key,
        manifest_url=issuer.get(ref, MANIFEST),
        files={path: issuer.get(ref, path) for path in files},
    )


def listing(store: CheckpointStore, scope: LeaseScope) -> Listing:
    refs = store.list(experiment_id=str(scope.experiment_id))
    return Listing(
        experiment_id=scope.experiment_id,
        checkpoints=[
            CheckpointInfo(key=r.key, step=r.step, size_bytes=store.size_bytes(r)) for r in refs
        ],
    )
