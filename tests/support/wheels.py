"""Tiny pure-Python wheels written by hand, for tests that run real pip with no index."""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path


def write_wheel(
    out_dir: Path,
    name: str,
    version: str,
    *,
    requires: Sequence[str] = (),
    modules: Mapping[str, str] | None = None,
) -> Path:
    """Writes `<name>-<version>-py3-none-any.whl` into `out_dir` and returns its path.

    By default the wheel holds one package, importable as `name` (dashes → underscores),
    whose `__version__` is `version`. `modules` maps archive paths to file contents instead.
    """
    stem = re.sub(r"[-_.]+", "_", name)
    files = dict(modules or {f"{stem}/__init__.py": f"__version__ = {version!r}\n"})
    info = f"{stem}-{version}.dist-info"
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires)
    )
    files[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: baton-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{stem}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            # A fixed timestamp: the same arguments give the same bytes (and the same hash).
            archive.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), text)
    return wheel
