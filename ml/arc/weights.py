"""Where a base model's files come from, and one clear line when they cannot be had.

A model is a local folder (a Kaggle dataset or model under ``/kaggle/input``, a copy on the
worker's disk) or a hub id, downloaded at ``model.revision`` into the hub cache (``HF_HOME``:
the agent points it at a per-worker folder that outlives each job; worker/jobenv.py). A gated
hub model needs ``HF_TOKEN``, which a job only has when its experiment names that secret.
Offline (``model.offline`` or ``HF_HUB_OFFLINE=1``), only a folder or the cache is read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ml.arc.configs import ModelSettings

log = logging.getLogger(__name__)

TOKEN_SECRET = "HF_TOKEN"


class ModelUnavailableError(RuntimeError):
    """The model's files cannot be had here; the message says why in one line."""


def offline(settings: ModelSettings) -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return settings.offline or flag in {"1", "true", "yes", "on"}


def from_pretrained(factory: Any, settings: ModelSettings, source: str, **kwargs: Any) -> Any:
    """``factory.from_pretrained`` (a tokenizer or model class) for the files at ``source``."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        if settings.revision:
            log.warning("model.revision is ignored for the local folder %s", folder)
        return factory.from_pretrained(str(folder), **kwargs)
    if _looks_like_path(source):
        raise ModelUnavailableError(
            f"model.name_or_path {source!r} is not a folder on this worker: attach the "
            "dataset or model that holds it (Kaggle: under /kaggle/input), or give a hub id"
        )
    from huggingface_hub.errors import HFValidationError

    try:
        return factory.from_pretrained(
            source, revision=settings.revision, local_files_only=offline(settings), **kwargs
        )
    except (OSError, HFValidationError) as exc:
        raise ModelUnavailableError(explain(exc, source, settings)) from exc


def explain(exc: BaseException, source: str, settings: ModelSettings) -> str:
    """One line naming why hub model ``source`` could not be loaded, and what to do."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cause = _first_in_chain(
        exc,
        (
            GatedRepoError,
            RevisionNotFoundError,
            RepositoryNotFoundError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            HFValidationError,
        ),
    )
    token = "set" if os.environ.get(TOKEN_SECRET) else "not set"
    at = f" at revision {settings.revision}" if settings.revision else ""
    if isinstance(cause, GatedRepoError):
        return (
            f"model {source!r} is gated: accept its licence on the hub with your account, "
            f"store your token as secret {TOKEN_SECRET} and name it in the experiment "
            f"(secrets: [{TOKEN_SECRET}]); {TOKEN_SECRET} is {token} in this job"
        )
    if isinstance(cause, RevisionNotFoundError):
        return f"model {source!r} has no revision {settings.revision!r} on the hub"
    if isinstance(cause, RepositoryNotFoundError):
        return (
            f"model {source!r} was not found on the hub (or is private; {TOKEN_SECRET} is "
            f"{token} in this job): check model.name_or_path"
        )
    if offline(settings) or isinstance(cause, LocalEntryNotFoundError | OfflineModeIsEnabled):
        return (
            f"model {source!r}{at} is not in this worker's cache "
            f"({os.environ.get('HF_HOME') or 'HF_HOME unset'}) and it may not download "
            "(offline): give a local folder, or run once online"
        )
    if isinstance(cause, HFValidationError):
        return f"model.name_or_path {source!r} is neither a folder here nor a hub id"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"model {source!r}{at} could not be loaded: {first_line}"


def _looks_like_path(source: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; anything with more to it names a folder."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1


def _first_in_chain(
    exc: BaseException, kinds: tuple[type[BaseException], ...]
) -> BaseException | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kinds):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
