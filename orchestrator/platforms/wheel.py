"""Wheels this control plane builds from its own source and serves to notebooks.

Notebooks ``pip install`` them from the control plane, so they run exactly the code that
matches it, with no package index involved: ``baton_worker`` (the agent, ``worker/``, needs
only httpx) and ``baton_ml`` (the workloads, ``ml/``, with the ``ml`` extra's requirements
minus torch: a notebook's own torch and CUDA stay as they are).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.metadata
import importlib.util
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import worker

VERSION = worker.__version__
# Everything that is not source stays out (caches, editor files).
SOURCE_SUFFIXES = (".py", ".lua")
WHEEL_PATH = "/api/v1/bootstrap/wheel/"
# The platform provides these (its CUDA build); a wheel requiring them could replace it.
PLATFORM_PROVIDED = frozenset({"torch"})


@dataclass(frozen=True)
class WheelSpec:
    dist: str  # the wheel's distribution name, e.g. baton_worker
    package: str  # the import package it holds, e.g. worker
    summary: str
    extra: str | None = None  # requirements: this extra of the installed `baton` distribution
    requires: tuple[str, ...] = ()  # ... or these
    entry_points: str = ""

    @property
    def filename(self) -> str:
        return f"{self.dist}-{VERSION}-py3-none-any.whl"

    @property
    def path(self) -> str:
        """Its URL path on the control plane."""
        return f"{WHEEL_PATH}{self.filename}"


WORKER = WheelSpec(
    dist="baton_worker",
    package="worker",
    summary="Baton's worker agent: runs jobs from a Baton control plane in any notebook.",
    requires=("httpx>=0.27",),
    entry_points="[console_scripts]\nbaton-worker = worker.__main__:main\n",
)
ML = WheelSpec(
    dist="baton_ml",
    package="ml",
    summary="Baton's workloads (ARC test-time training, video branches) as resumable jobs.",
    extra="ml",
)
WHEELS = {spec.dist: spec for spec in (WORKER, ML)}


def wheel_name() -> str:
    """The worker wheel's file name (what bootstrap cells install)."""
    return WORKER.filename


def by_filename(filename: str) -> WheelSpec | None:
    return next((spec for spec in WHEELS.values() if spec.filename == filename), None)


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    return (match.group(0) if match else "").lower().replace("_", "-")


def extra_requirements(extra: str) -> tuple[str, ...]:
    """``baton[extra]``'s requirements from the installed metadata, less platform-provided ones."""
    found = []
    for line in importlib.metadata.requires("baton") or []:
        requirement, _, marker = line.partition(";")
        wanted = re.fullmatch(rf"""\s*extra\s*==\s*["']{re.escape(extra)}["']\s*""", marker)
        if wanted and _requirement_name(requirement) not in PLATFORM_PROVIDED:
            found.append(requirement.strip())
    return tuple(found)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _package_root(package: str) -> Path:
    # find_spec of a top-level package locates it without importing (running) it.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LookupError(f"package {package!r} is not installed on this control plane")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _sources(package: str) -> list[tuple[str, bytes]]:
    root = _package_root(package)
    return [
        (f"{package}/{path.relative_to(root).as_posix()}", path.read_bytes())
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts
    ]


def _metadata(spec: WheelSpec) -> list[tuple[str, bytes]]:
    info = f"{spec.dist}-{VERSION}.dist-info"
    requires = extra_requirements(spec.extra) if spec.extra else spec.requires
    metadata = "\n".join(
        [
            "Metadata-Version: 2.1",
            f"Name: {spec.dist.replace('_', '-')}",
            f"Version: {VERSION}",
            f"Summary: {spec.summary}",
            "Requires-Python: >=3.11",
            *(f"Requires-Dist: {req}" for req in requires),
            "",
        ]
    )
    wheel = "Wheel-Version: 1.0\nGenerator: baton\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files = [(f"{info}/METADATA", metadata.encode()), (f"{info}/WHEEL", wheel.encode())]
    if spec.entry_points:
        files.append((f"{info}/entry_points.txt", spec.entry_points.encode()))
    return files


@functools.cache
def build_wheel(dist: str = WORKER.dist) -> bytes:
    """The wheel's bytes (built once per process: the source does not change under it)."""
    spec = WHEELS[dist]
    files = _sources(spec.package) + _metadata(spec)
    record_path = f"{spec.dist}-{VERSION}.dist-info/RECORD"
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files)
    record += f"{record_path},,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in [*files, (record_path, record.encode())]:
            archive.writestr(name, data)
    return buffer.getvalue()
