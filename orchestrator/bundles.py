"""Code bundles: ``.tar.gz`` archives of a working directory, stored by their sha256.

``BundleStore`` is the whole interface the API and the services use: receive a stream into
a temporary file (hashing and counting as it arrives), check it, keep it under its digest
with an atomic rename, and hand it out again. It keeps bundles under
``BATON_DATA_DIR/bundles/sha256/<hex>.tar.gz``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from orchestrator.errors import Invalid
from orchestrator.models.experiment import BUNDLE_DIGEST
from orchestrator.settings import Settings
from worker.code import unsafe_member

_DIGEST = re.compile(BUNDLE_DIGEST)
# Unpacked, a bundle may hold at most this many times its compressed size: a gzip bomb would
# otherwise fill every worker's disk that unpacks it.
MAX_EXPANSION = 50
CHUNK_BYTES = 1024 * 1024


class TooLarge(Exception):
    """More bytes arrived than the cap allows."""


@dataclass(frozen=True)
class Stored:
    digest: str
    size: int
    created: bool  # False: the store already held these bytes


def parse_digest(digest: str) -> str:
    """The hex part of ``sha256:<hex>``; ValueError for anything else."""
    if not _DIGEST.match(digest):
        raise ValueError(f"{digest!r} is not a bundle digest (sha256:<64 lowercase hex>)")
    return digest.removeprefix("sha256:")


class Incoming:
    """A bundle being received: written to a temporary file, hashed and counted as it comes."""

    def __init__(self, directory: Path, *, limit: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, suffix=".part")
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.limit = limit
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise TooLarge
        self._hash.update(chunk)
        self._file.write(chunk)

    def close(self) -> None:
        self._file.close()

    @property
    def digest(self) -> str:
        return f"sha256:{self._hash.hexdigest()}"

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Incoming:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.discard()  # after ``BundleStore.add`` the file has been renamed away: a no-op


class BundleStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._objects = root / "sha256"
        self._incoming = root / "incoming"

    @classmethod
    def from_settings(cls, settings: Settings) -> BundleStore:
        return cls(settings.data_dir / "bundles")

    def receive(self, *, limit: int) -> Incoming:
        return Incoming(self._incoming, limit=limit)

    def path(self, digest: str) -> Path:
        return self._objects / f"{parse_digest(digest)}.tar.gz"

    def size(self, digest: str) -> int | None:
        """The stored bundle's size in bytes, or None when the store does not hold it."""
        try:
            return self.path(digest).stat().st_size
        except (FileNotFoundError, ValueError):
            return None

    def add(self, incoming: Incoming) -> Stored:
        """Keep a fully received (and checked) bundle under its digest; idempotent."""
        incoming.close()
        target = self.path(incoming.digest)
        if target.exists():
            incoming.discard()
            return Stored(incoming.digest, incoming.size, created=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(incoming.path, target)  # atomic: readers see all of it or nothing
        return Stored(incoming.digest, incoming.size, created=True)

    def chunks(self, digest: str, *, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The stored bundle's bytes, a chunk at a time (never all of it in memory)."""
        with self.path(digest).open("rb") as fh:
            while chunk := fh.read(chunk_bytes):
                yield chunk


def check_archive(path: Path, *, max_unpacked: int) -> None:
    """Refuse (422) anything but a gzip tar of regular files, directories and inward links."""
    unpacked = 0
    try:
        with tarfile.open(path, mode="r:gz") as archive:
            for member in archive:
                problem = unsafe_member(member)
                if problem:
                    raise Invalid(f"bundle member {member.name!r} is {problem}")
                unpacked += member.size
                if unpacked > max_unpacked:
                    raise Invalid(
                        f"bundle unpacks to over {max_unpacked} bytes "
                        f"({MAX_EXPANSION}x its compressed size)"
                    )
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise Invalid(f"the body is not a .tar.gz archive ({exc})") from None
