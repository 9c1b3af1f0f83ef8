"""Hosted notebooks, told apart by an environment variable *and* a directory of their own.

Requiring both keeps a laptop with ``~/.kaggle/kaggle.json`` or ``KAGGLE_USERNAME`` (the
Kaggle CLI's credentials) from passing for a Kaggle session.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.platforms.probe import Probe


@dataclass(frozen=True)
class Signature:
    platform: str
    # Any of these matches: ``NAME`` (set and non-empty) or ``NAME=value`` (exactly).
    env: tuple[str, ...]
    # ...and any of these directories exists.
    paths: tuple[str, ...]
    # Environment variables worth reporting as details, when set.
    details: tuple[str, ...] = ()


SIGNATURES = (
    Signature(
        "kaggle",
        env=("KAGGLE_KERNEL_RUN_TYPE",),
        paths=("/kaggle/working",),
        details=("KAGGLE_KERNEL_RUN_TYPE",),
    ),
    Signature(
        "colab",
        env=("COLAB_RELEASE_TAG", "COLAB_GPU"),
        paths=("/content",),
        details=("COLAB_RELEASE_TAG",),
    ),
    Signature(
        "paperspace",
        env=("PAPERSPACE_NOTEBOOK_REPO_ID", "PAPERSPACE_NOTEBOOK_ID"),
        paths=("/notebooks", "/storage"),
        details=("PAPERSPACE_NOTEBOOK_ID",),
    ),
    Signature(
        "studiolab",
        env=("HOME=/home/studio-lab-user", "USER=studio-lab-user"),
        paths=("/home/studio-lab-user",),
    ),
)


def _env_matches(probe: Probe, spec: str) -> bool:
    name, sep, value = spec.partition("=")
    actual = probe.env.get(name)
    return actual == value if sep else bool(actual)


def match(probe: Probe) -> tuple[str, dict[str, str]] | None:
    """(platform, details) of the hosted notebook this is, or None."""
    for sig in SIGNATURES:
        if any(_env_matches(probe, spec) for spec in sig.env) and any(
            probe.path(p).is_dir() for p in sig.paths
        ):
            return sig.platform, {
                name: probe.env[name] for name in sig.details if probe.env.get(name)
            }
    return None
