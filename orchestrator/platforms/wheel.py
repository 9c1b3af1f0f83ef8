"""The worker agent as a wheel, built from this control plane's own copy of ``worker/``.

Notebooks ``pip install`` it from the control plane, so they run exactly the agent that
matches it, with no package index involved. The agent needs only httpx.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import zipfile
from pathlib import Path

import worker

DIST = "baton_worker"
VERSION = worker.__version__
REQUIRES = ("httpx>=0.27",)
# Everything that is not the agent's source stays out (caches, editor files).
SOURCE_SUFFIXES = (".py", ".lua")


def wheel_name() -> str:
    return f"{DIST}-{VERSION}-py3-none-any.whl"


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _sources() -> list[tuple[str, bytes]]:
    root = Path(worker.__file__).resolve().parent
    return [
        (f"worker/{path.relative_to(root).as_posix()}", path.read_bytes())
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts
    ]


def _metadata() -> list[tuple[str, bytes]]:
    info = f"{DIST}-{VERSION}.dist-info"
    metadata = "\n".join(
        [
            "Metadata-Version: 2.1",
            "Name: baton-worker",
            f"Version: {VERSION}",
            "Summary: Baton's worker agent: runs jobs from a Baton control plane in any notebook.",
            "Requires-Python: >=3.11",
            *(f"Requires-Dist: {req}" for req in REQUIRES),
            "",
        ]
    )
    wheel = "Wheel-Version: 1.0\nGenerator: baton\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entry_points = "[console_scripts]\nbaton-worker = worker.__main__:main\n"
    return [
        (f"{info}/METADATA", metadata.encode()),
        (f"{info}/WHEEL", wheel.encode()),
        (f"{info}/entry_points.txt", entry_points.encode()),
    ]


@functools.cache
def build_wheel() -> bytes:
    """The wheel's bytes (built once per process: the source does not change under it)."""
    files = _sources() + _metadata()
    record_path = f"{DIST}-{VERSION}.dist-info/RECORD"
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files)
    record += f"{record_path},,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in [*files, (record_path, record.encode())]:
            archive.writestr(name, data)
    return buffer.getvalue()
