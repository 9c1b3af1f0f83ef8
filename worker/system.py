"""What this machine is: reported to the control plane at registration."""

from __future__ import annotations

import platform as _platform
import shutil
import socket
import subprocess
import sys
from importlib import metadata
from typing import Any

from worker import __version__

LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "numpy")


def gpu_inventory() -> tuple[str | None, int, int]:
    """(name, count, memory of the smallest GPU in MB) from nvidia-smi; (None, 0, 0) without."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None, 0, 0
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, 0, 0
    rows = [line.rsplit(",", 1) for line in out.strip().splitlines() if "," in line]
    if not rows:
        return None, 0, 0
    memory = min(int(float(mem)) for _, mem in rows)
    return rows[0][0].strip(), len(rows), memory


def library_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "baton-worker": __version__}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def describe_host(*, name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    gpu_name, gpu_count, gpu_memory_mb = gpu_inventory()
    info: dict[str, Any] = {
        "name": name,
        "platform": "mac" if _platform.system() == "Darwin" else "local",
        "hostname": socket.gethostname(),
        "gpu_name": gpu_name,
        "gpu_count": gpu_count,
        "gpu_memory_mb": gpu_memory_mb,
        "libraries": library_versions(),
    }
    info.update({k: v for k, v in overrides.items() if v is not None})
    return info
