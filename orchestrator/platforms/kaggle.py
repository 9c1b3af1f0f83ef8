"""Kaggle through the official `kaggle` package: weekly GPU quota, kernel push and status.

A launched kernel is a script kernel running the Kaggle bootstrap cell with the launch's
single-use enrollment code (nothing can attach Kaggle Secrets to a kernel pushed through the
API); its metadata turns GPU and internet on explicitly, since the defaults of the CLI and of
the web UI disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.models.launch import LaunchStatus
from orchestrator.platforms import bootstrap
from orchestrator.services.enrollment import Issued
from orchestrator.settings import Settings
from orchestrator.urls import public_url

CODE_FILE = "baton_worker.py"
METADATA_FILE = "kernel-metadata.json"
# What a Kaggle GPU worker offers (a T4 or P100 shows about 15 GiB), to match queued work.
GPU_MEMORY_MB = 15 * 1024

_STATUS = {
    "QUEUED": LaunchStatus.queued,
    "NEW_SCRIPT": LaunchStatus.queued,
    "RUNNING": LaunchStatus.running,
    "COMPLETE": LaunchStatus.complete,
    "ERROR": LaunchStatus.error,
    "CANCEL_REQUESTED": LaunchStatus.canceled,
    "CANCEL_ACKNOWLEDGED": LaunchStatus.canceled,
}


class KaggleError(RuntimeError):
    pass


def enabled(settings: Settings) -> bool:
    return bool(settings.kaggle_username and settings.kaggle_key.get_secret_value())


def kernel_slug(settings: Settings) -> str:
    return f"{settings.kaggle_username}/{settings.kaggle_kernel}"


def kernel_files(
    settings: Settings, *, pip: str, session_hours: float, enroll: Issued
) -> dict[str, str]:
    """kernel-metadata.json and the script, as ``kaggle kernels push`` reads them from a folder."""
    metadata = {
        "id": kernel_slug(settings),
        "title": settings.kaggle_kernel,
        "code_file": CODE_FILE,
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": True,
        "enable_tpu": False,
        "enable_internet": True,
        "dataset_sources": [],
        "competition_sources": [],
        "kernel_sources": [],
        "model_sources": [],
    }
    script = bootstrap.render(
        "kaggle",
        api_url=public_url(settings),
        pip=pip,
        # The worker's deadline is the kernel's timeout; idle, it exits instead of burning quota.
        args=["--session-hours", f"{session_hours:g}", "--idle-exit", "600"],
        env={"BATON_PLATFORM_ACCOUNT": settings.kaggle_username},
        enroll=enroll,
    ).cell
    return {METADATA_FILE: json.dumps(metadata, indent=2) + "\n", CODE_FILE: script}


@dataclass(frozen=True)
class Quota:
    used_seconds: float
    allowed_seconds: float
    resets_at: datetime | None

    @property
    def remaining_seconds(self) -> float:
        return max(0.0, self.allowed_seconds - self.used_seconds)


@dataclass(frozen=True)
class Pushed:
    ref: str
    version_number: int | None


@dataclass(frozen=True)
class KernelState:
    status: LaunchStatus
    message: str | None


def _seconds(delta: Any) -> float:
    return float(delta.total_seconds()) if delta is not None else 0.0


class KaggleGateway:
    """The three calls Baton makes, through the `kaggle` package's own KaggleApi."""

    def __init__(self, *, username: str, key: str, endpoint: str = "") -> None:
        self._api = _make_api(username=username, key=key, endpoint=endpoint)

    @classmethod
    def from_settings(cls, settings: Settings) -> KaggleGateway:
        return cls(
            username=settings.kaggle_username,
            key=settings.kaggle_key.get_secret_value(),
            endpoint=settings.kaggle_api_endpoint,
        )

    def quota(self) -> Quota:
        reply = self._call(self._api.quota_view)
        gpu = reply.gpu_quota
        if gpu is None:
            raise KaggleError("Kaggle reported no GPU quota for this account")
        refresh = reply.quota_refresh_time  # naive UTC, as the client parses it
        return Quota(
            used_seconds=_seconds(gpu.time_used),
            allowed_seconds=_seconds(gpu.total_time_allowed),
            resets_at=refresh.replace(tzinfo=UTC) if refresh is not None else None,
        )

    def push(self, folder: Path, *, timeout_seconds: int) -> Pushed:
        reply = self._call(self._api.kernels_push, str(folder), timeout=str(timeout_seconds))
        if reply.error:
            raise KaggleError(f"Kaggle refused the kernel: {reply.error}")
        return Pushed(ref=reply.ref or reply.url, version_number=reply.version_number)

    def status(self, slug: str) -> KernelState:
        reply = self._call(self._api.kernels_status, slug)
        name = getattr(reply.status, "name", str(reply.status))
        status = _STATUS.get(name)
        if status is None:
            raise KaggleError(f"unknown kernel status {name!r}")
        return KernelState(status=status, message=reply.failure_message or None)

    @staticmethod
    def _call(method: Any, *args: Any, **kwargs: Any) -> Any:
        """Any failure of the client (HTTP, validation, a bad reply) becomes a KaggleError."""
        try:
            return method(*args, **kwargs)
        except KaggleError:
            raise
        except Exception as exc:
            raise KaggleError(f"{type(exc).__name__}: {exc}") from exc


def _make_api(*, username: str, key: str, endpoint: str) -> Any:
    # Imported here: `import kaggle` authenticates from the environment and ~/.kaggle at once,
    # which the rest of the control plane has no business doing.
    from kaggle.api.kaggle_api_extended import AuthMethod, KaggleApi

    class BatonKaggleApi(KaggleApi):
        def build_kaggle_client(self) -> Any:
            client = super().build_kaggle_client()
            if endpoint:
                # The package offers fixed environments only (prod, localhost:80); tests point
                # the same client at a local stand-in of the Kaggle API here.
                client.http_client()._endpoint = endpoint.rstrip("/")
            return client

    api = BatonKaggleApi()
    # Credentials come from Baton's settings, not from whatever this host's ~/.kaggle holds;
    # this is what authenticate() records for a legacy API key.
    api.config_values = {
        api.CONFIG_NAME_USER: username,
        api.CONFIG_NAME_KEY: key,
        api.CONFIG_NAME_AUTH_METHOD: str(AuthMethod.LEGACY_API_KEY),
    }
    return api
