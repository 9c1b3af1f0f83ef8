"""Pack a working directory into a code bundle (.tar.gz), honouring .gitignore and .batonignore.

The archive is reproducible: the same files (contents, modes, times) give the same bytes, so
the same digest, and the server keeps one copy however often it is uploaded.
"""

from __future__ import annotations

import gzip
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from baton_client.errors import BundleTooLarge
from baton_client.ignore import IgnoreRules

IGNORE_FILES = (".gitignore", ".batonignore")  # read in this order: .batonignore wins
ALWAYS_LEFT_OUT = frozenset({".git"})
LARGEST_SHOWN = 5


@dataclass
class Packed:
    archive: Path
    files: list[tuple[str, int]] = field(default_factory=list)  # (path, bytes) of each file
    skipped_links: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.archive.stat().st_size

    def largest(self, count: int = LARGEST_SHOWN) -> list[tuple[str, int]]:
        return sorted(self.files, key=lambda item: (-item[1], item[0]))[:count]


def _rules_for(directory: Path, rel: str, rules: IgnoreRules) -> IgnoreRules:
    for name in IGNORE_FILES:
        path = directory / name
        if path.is_file():
            rules = rules.extended(path.read_text(errors="replace"), base=rel)
    return rules


def _walk(directory: Path, rel: str, rules: IgnoreRules) -> list[tuple[str, Path]]:
    """(archive name, path) of what goes in, parents before children, sorted."""
    rules = _rules_for(directory, rel, rules)
    found: list[tuple[str, Path]] = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        name = f"{rel}/{entry.name}" if rel else entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if entry.name in ALWAYS_LEFT_OUT or rules.ignored(name, is_dir=is_dir):
            continue
        path = Path(entry.path)
        found.append((name, path))
        if is_dir:
            found.extend(_walk(path, name, rules))
    return found


def _link_inside(root: Path, path: Path) -> bool:
    target = (path.parent / os.readlink(path)).resolve()
    return not os.path.isabs(os.readlink(path)) and target.is_relative_to(root.resolve())


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Who packed it is not part of the code; leaving it out keeps digests reproducible.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack(directory: Path, archive: Path) -> Packed:
    """Write ``directory``'s files to ``archive`` (.tar.gz), leaving out ignored ones and
    symlinks that point outside it."""
    root = directory.resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"{directory} is not a directory")
    packed = Packed(archive=archive)
    with (
        archive.open("wb") as raw,
        gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, path in _walk(root, "", IgnoreRules()):
            if path.is_symlink() and not _link_inside(root, path):
                packed.skipped_links.append(name)
                continue
            info = _normalised(tar.gettarinfo(str(path), arcname=name))
            if info.isreg():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
                packed.files.append((name, info.size))
            else:
                tar.addfile(info)
    return packed


def describe_largest(packed: Packed) -> str:
    return ", ".join(f"{name} ({size / 1e6:.1f} MB)" for name, size in packed.largest())


def check_size(packed: Packed, *, max_mb: int) -> None:
    if packed.size > max_mb * 1024 * 1024:
        raise BundleTooLarge(
            f"the packed directory is {packed.size / 1e6:.1f} MB, over the {max_mb} MB cap; "
            f"largest files: {describe_largest(packed)} — leave them out with .batonignore"
        )
