"""What this machine is: reported to the control plane at registration."""

from __future__ import annotations

import socket
import sys
from importlib import metadata
from typing import Any

from worker import __version__
from worker.platforms import Detected, Probe, detect, gpu_inventory

LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "numpy")
# Which platform account this session belongs to (e.g. a Kaggle username), for per-account quotas.
ACCOUNT_ENV = "BATON_PLATFORM_ACCOUNT"


def library_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "baton-worker": __version__}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def describe_host(
    *,
    name: str,
    overrides: dict[str, Any],
    probe: Probe | None = None,
    detected: Detected | None = None,
) -> dict[str, Any]:
    probe = probe or Probe.here()
    detected = detected or detect(probe, platform=overrides.get("platform"))
    gpus = gpu_inventory(probe)
    info: dict[str, Any] = {
        "name": name,
        "platform": detected.platform,
        "account": probe.env.get(ACCOUNT_ENV, ""),
        "hostname": socket.gethostname(),
        "gpu_name": gpus.name,
        "gpu_count": gpus.count,
        "gpu_memory_mb": gpus.memory_mb,
        "libraries": library_versions(),
    }
    info.update({k: v for k, v in overrides.items() if v is not None})
    return info
