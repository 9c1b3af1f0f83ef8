"""Blobs on the control plane's disk, streamed in and out, written atomically.

One ``BlobStore`` per root directory (today: the checkpoint dir). A key is a relative POSIX
path confined to the root: no ``..``, no absolute path, no backslash, no empty or hidden
first segment (``.staging`` holds uploads in progress). Bytes arrive in chunks and go to a
temp file beside the target; only a complete blob of the declared size and sha256 is renamed
into place, so a reader never sees half a file and a corrupt upload leaves nothing behind.
Nothing holds a whole blob in memory.

Resumable uploads (``ResumableUpload``) keep their bytes in ``.staging/<id>.part`` between
requests, so a dropped connection costs one chunk and any API process on the same disk can
take the next one.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterable, Iterable
from functools import partial
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.to_thread

from orchestrator.errors import BatonError

STAGING = ".staging"
READ_BLOCK = 1 << 20
# Request bodies arrive in small pieces (uvicorn: up to 64 KiB); hand the disk 1 MiB at a time.
WRITE_BLOCK = 1 << 20


class BlobError(BatonError):
    """A key or an upload the store refuses (400 unless a subclass says otherwise)."""

    code = "bad_upload"


class BadKey(BlobError):
    code = "bad_key"


class Mismatch(BlobError):
    """The bytes are not what was declared (size or sha256)."""

    status_code = 422
    code = "mismatch"


class TooLarge(BlobError):
    status_code = 413
    code = "too_large"


def check_key(key: str) -> str:
    """``key`` if it is a plain relative path inside the root, else BadKey."""
    parts = key.split("/")
    if (
        not key
        or len(key) > 2048
        or "\\" in key
        or "\x00" in key
        or key.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or parts[0].startswith(".")
    ):
        raise BadKey(f"not a plain relative path inside the store: {key!r}")
    return key


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(READ_BLOCK):
            h.update(block)
    return h.hexdigest()


class BlobWriter:
    """One blob being written: ``write`` chunks, then ``commit`` (or ``discard``)."""

    def __init__(
        self,
        target: Path,
        tmp: Path,
        *,
        expected_size: int | None,
        expected_sha256: str | None,
        max_bytes: int | None,
    ) -> None:
        self.target = target
        self.tmp = tmp
        self.expected_size = expected_size
        self.expected_sha256 = expected_sha256
        self.limit = expected_size if expected_size is not None else max_bytes
        self.size = 0
        self._hash = hashlib.sha256()
        tmp.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] | None = tmp.open("wb")

    def write(self, data: bytes) -> None:
        assert self._fh is not None, "write after commit or discard"
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            self.discard()
            what = "the declared size" if self.expected_size is not None else "the limit"
            raise TooLarge(f"body is longer than {what} of {self.limit} bytes")
        self._hash.update(data)
        self._fh.write(data)

    def commit(self) -> tuple[str, int]:
        """Check size and hash, then rename into place; ``(sha256, size)``."""
        assert self._fh is not None, "commit after commit or discard"
        self._fh.close()
        self._fh = None
        digest = self._hash.hexdigest()
        try:
            _verify(self.size, digest, self.expected_size, self.expected_sha256)
        except Mismatch:
            self.tmp.unlink(missing_ok=True)
            raise
        self.target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp, self.target)
        return digest, self.size

    def discard(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self.tmp.unlink(missing_ok=True)


def _verify(size: int, digest: str, expected_size: int | None, expected_sha256: str | None) -> None:
    if expected_size is not None and size != expected_size:
        raise Mismatch(f"got {size} bytes, {expected_size} were declared")
    if expected_sha256 is not None and digest != expected_sha256:
        raise Mismatch(f"sha256 of the bytes received is {digest}, {expected_sha256} was declared")


async def write_async(writer: BlobWriter, chunks: AsyncIterable[bytes]) -> None:
    """Feed ``chunks`` (a request body) to ``writer`` in 1 MiB blocks, off the event loop."""
    pending = bytearray()
    try:
        async for chunk in chunks:
            pending += chunk
            if len(pending) >= WRITE_BLOCK:
                block, pending = bytes(pending), bytearray()
                await anyio.to_thread.run_sync(writer.write, block)
        if pending:
            await anyio.to_thread.run_sync(writer.write, bytes(pending))
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(writer.discard)
        raise


class _Hashers:
    """Running sha256 of resumable uploads in this process, so finishing one does not re-read
    it; any gap (another process took a chunk, a restart) falls back to hashing the file."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Path, tuple[int, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, part: Path, offset: int) -> Any:
        """The hash of the first ``offset`` bytes of ``part``, if this process has it."""
        with self._lock:
            held = self._items.pop(part, None)
        if held is not None and held[0] == offset:
            return held[1]
        return hashlib.sha256() if offset == 0 else None

    def keep(self, part: Path, offset: int, state: Any) -> None:
        with self._lock:
            self._items[part] = (offset, state)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


class ResumableUpload:
    """A blob sent in chunks over several requests (``Content-Range``), resumable from the
    number of bytes held. Identified by key + declared size + sha256, so asking again for the
    same upload continues it."""

    def __init__(self, store: BlobStore, key: str, *, size: int, sha256: str) -> None:
        self.store = store
        self.key = key
        self.size = size
        self.sha256 = sha256
        self.target = store.path(key)
        name = hashlib.sha256(f"{key}\n{size}\n{sha256}".encode()).hexdigest()
        self.part = store.staging / f"{name}.part"

    def held(self) -> int:
        """Bytes received so far."""
        try:
            return self.part.stat().st_size
        except FileNotFoundError:
            return 0

    def done(self) -> bool:
        """Finished earlier: the blob is in place and no part is pending."""
        return not self.part.exists() and self.target.is_file()

    def _open_at(self, start: int) -> IO[bytes]:
        """The part, cut back to ``start`` and positioned there (blocking: run in a thread)."""
        held = self.held()
        if start > held:
            raise BlobError(f"chunk starts at byte {start}, but only {held} bytes are held")
        if start == 0 and held == 0:
            self.store.sweep_staging()
        self.part.parent.mkdir(parents=True, exist_ok=True)
        fh = self.part.open("r+b" if self.part.exists() else "wb")
        fh.truncate(start)
        fh.seek(start)
        return fh

    async def write(self, start: int, chunks: AsyncIterable[bytes]) -> int:
        """Append a chunk that starts at byte ``start``; returns the bytes now held.

        A chunk may overlap what is held (its reply was lost and it came again): the part is
        cut back to ``start`` first. One that starts past the end would leave a gap: refused.
        Every touch of the disk runs in a thread, never on the event loop.
        """
        fh = await anyio.to_thread.run_sync(self._open_at, start)
        hasher = self.store.hashers.take(self.part, start)
        position = start
        pending = bytearray()

        def flush() -> None:
            nonlocal position
            if position + len(pending) > self.size:
                raise TooLarge(f"chunk runs past the declared size of {self.size} bytes")
            fh.write(pending)
            if hasher is not None:
                hasher.update(pending)
            position += len(pending)

        try:
            async for piece in chunks:
                pending += piece
                if len(pending) >= WRITE_BLOCK:
                    await anyio.to_thread.run_sync(flush)
                    pending = bytearray()
            if pending:
                await anyio.to_thread.run_sync(flush)
        finally:
            # Whatever arrived stays: the sender asks how much is held and goes on.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(fh.close)
            if hasher is not None:
                self.store.hashers.keep(self.part, position, hasher)
        return position

    def finish(self) -> None:
        """Verify the complete part and rename it into place; a mismatch discards it."""
        hasher = self.store.hashers.take(self.part, self.size)
        digest = hasher.hexdigest() if hasher is not None else _sha256_of(self.part)
        try:
            _verify(self.held(), digest, self.size, self.sha256)
        except Mismatch:
            self.part.unlink(missing_ok=True)
            raise
        self.target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.part, self.target)


class BlobStore:
    """Blobs under ``root``, addressed by relative keys."""

    def __init__(self, root: Path, *, stale_seconds: float = 24 * 3600) -> None:
        self.root = root.expanduser().resolve()
        self.staging = self.root / STAGING
        self.stale_seconds = stale_seconds
        self.hashers = _Hashers()

    def path(self, key: str) -> Path:
        """Where ``key`` lives; BadKey for anything that could leave the root."""
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):  # a symlink pointing out
            raise BadKey(f"not a plain relative path inside the store: {key!r}")
        return path

    def size(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    def writer(
        self,
        key: str,
        *,
        expected_size: int | None = None,
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> BlobWriter:
        target = self.path(key)
        tmp = self.staging / f"{uuid.uuid4().hex}.tmp"
        return BlobWriter(
            target,
            tmp,
            expected_size=expected_size,
            expected_sha256=expected_sha256,
            max_bytes=max_bytes,
        )

    def put_stream(
        self,
        key: str,
        chunks: Iterable[bytes],
        *,
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> tuple[str, int]:
        """Store ``chunks`` under ``key`` atomically; ``(sha256, size)``. Mismatch if the
        bytes do not hash to ``expected_sha256``, TooLarge past ``max_bytes``: nothing stored."""
        writer = self.writer(key, expected_sha256=expected_sha256, max_bytes=max_bytes)
        try:
            for chunk in chunks:
                writer.write(chunk)
        except BaseException:
            writer.discard()
            raise
        return writer.commit()

    async def put_async_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        expected_size: int | None = None,
        expected_sha256: str | None = None,
        max_bytes: int | None = None,
    ) -> tuple[str, int]:
        """``put_stream`` for an async body (``request.stream()``), disk work off the loop."""
        make = partial(
            self.writer,
            key,
            expected_size=expected_size,
            expected_sha256=expected_sha256,
            max_bytes=max_bytes,
        )
        writer = await anyio.to_thread.run_sync(make)  # it creates the temporary file
        await write_async(writer, chunks)
        return await anyio.to_thread.run_sync(writer.commit)

    def resumable(self, key: str, *, size: int, sha256: str) -> ResumableUpload:
        return ResumableUpload(self, check_key(key), size=size, sha256=sha256)

    def sweep_staging(self) -> None:
        """Remove uploads nobody has touched for ``stale_seconds`` (their URLs have expired)."""
        if not self.staging.is_dir():
            return
        cutoff = time.time() - self.stale_seconds
        for item in self.staging.iterdir():
            try:
                if item.stat().st_mtime < cutoff:
                    item.unlink()
            except FileNotFoundError:
                continue
