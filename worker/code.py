"""An experiment's code on the worker: an uploaded bundle or a git checkout, fresh per attempt.

Bundles are downloaded once per digest into a cache (streamed, sha256-checked, published by
an atomic rename) and unpacked afresh into each attempt's directory. Git code is cloned
afresh into it; the commit the ref resolved to is reported on the attempt.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from worker.client import ApiError, WorkerClient

log = logging.getLogger(__name__)

DOWNLOAD_TRIES = 4
CHUNK_BYTES = 1024 * 1024
# The transports a clone may use; never `ext::`, which would run a command on this machine.
GIT_PROTOCOLS = "https:http:ssh:git:file"
GIT_TIMEOUT_SECONDS = 1800


class CodeError(Exception):
    """The experiment's code could not be fetched or unpacked (one line: what and why)."""


class _Refused(CodeError):
    """The control plane said no (4xx): asking again will not change its mind."""


class BundleCache:
    """Bundles by digest under ``root`` (``sha256/<hex>.tar.gz``); each is fetched once."""

    def __init__(self, root: Path, client: WorkerClient) -> None:
        self.root = root
        self.client = client

    def path(self, digest: str) -> Path:
        return self.root / "sha256" / f"{digest.removeprefix('sha256:')}.tar.gz"

    def fetch(self, *, digest: str, url: str, size: int | None) -> Path:
        target = self.path(digest)
        if target.exists():
            return target
        delay = 1.0
        for attempt in range(1, DOWNLOAD_TRIES + 1):
            try:
                self._download(digest=digest, url=url, size=size, target=target)
                return target
            except _Refused:
                raise
            except (httpx.TransportError, CodeError) as exc:
                if attempt == DOWNLOAD_TRIES:
                    raise CodeError(f"cannot download bundle {digest}: {exc}") from None
                log.warning("bundle download failed (%s); retrying in %.0fs", exc, delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _download(self, *, digest: str, url: str, size: int | None, target: Path) -> None:
        incoming = self.root / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=incoming, suffix=".part")
        part = Path(name)
        sha = hashlib.sha256()
        received = 0
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    with self.client.stream("GET", url) as response:
                        for chunk in response.iter_bytes(CHUNK_BYTES):
                            sha.update(chunk)
                            out.write(chunk)
                            received += len(chunk)
                except ApiError as exc:
                    if exc.status < 500:
                        raise _Refused(f"cannot download bundle {digest}: {exc}") from None
                    raise CodeError(str(exc)) from None
            if size is not None and received != size:
                raise CodeError(f"got {received} bytes of {size}")
            if f"sha256:{sha.hexdigest()}" != digest:
                raise CodeError(f"the bytes received hash to sha256:{sha.hexdigest()}")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, target)  # atomic: the cache never holds half a bundle
        finally:
            part.unlink(missing_ok=True)


def _unsafe_name(name: str) -> str | None:
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        return "an absolute or malformed path"
    if ".." in name.split("/"):
        return "a '..' component"
    return None


def _inside(base: str, target: str) -> bool:
    """Whether ``target`` (relative to directory ``base`` of the archive) stays in the archive."""
    joined = posixpath.normpath(posixpath.join(base, target))
    return not (target.startswith("/") or joined == ".." or joined.startswith("../"))


def unsafe_member(member: tarfile.TarInfo) -> str | None:
    """Why a bundle member must not be unpacked, or None: only regular files, directories and
    links that stay inside the bundle. The control plane refuses such bundles at upload (422);
    the worker checks again, on Pythons whose tarfile has no extraction filters."""
    reason = _unsafe_name(member.name)
    if reason:
        return reason
    if member.isreg() or member.isdir():
        return None
    if member.issym():
        if _inside(posixpath.dirname(member.name), member.linkname):
            return None
        return f"a symlink pointing outside the bundle ({member.linkname})"
    if member.islnk():
        if _unsafe_name(member.linkname) is None:
            return None
        return f"a hard link to {member.linkname}"
    return "a device, FIFO or other special file"


def unpack(archive: Path, dest: Path) -> None:
    """Unpack a bundle into a fresh ``dest``, refusing unsafe members.

    The member check runs everywhere; tarfile's ``data`` filter adds its own where it exists
    (Python 3.11.4+; older 3.11s, such as Debian 12's in a notebook image, lack it).
    """
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    try:
        with tarfile.open(archive, mode="r:gz") as bundle:
            members = bundle.getmembers()
            for member in members:
                if problem := unsafe_member(member):
                    raise CodeError(f"bundle member {member.name!r} is {problem}")
            if hasattr(tarfile, "data_filter"):
                bundle.extractall(dest, members=members, filter="data")
            else:
                bundle.extractall(dest, members=members)  # nosec B202 - members checked above
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CodeError(f"cannot unpack {archive.name}: {exc}") from None


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"  # no one is there to type a password
    env["GIT_ALLOW_PROTOCOL"] = GIT_PROTOCOLS
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


def _git(args: list[str], *, log_file: Path, cwd: Path | None = None) -> bool:
    """Run git with its output appended to the job's log; whether it succeeded."""
    with log_file.open("ab") as out:
        out.write(f"[baton] git {' '.join(args)}\n".encode())
        out.flush()
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=cwd,
                env=_git_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=GIT_TIMEOUT_SECONDS,
                check=False,
            )
        except FileNotFoundError:
            raise CodeError("git is not installed on this worker") from None
        except subprocess.TimeoutExpired:
            raise CodeError(f"git {args[0]} took over {GIT_TIMEOUT_SECONDS}s") from None
    return done.returncode == 0


def git_checkout(url: str, ref: str, dest: Path, *, log_file: Path) -> str:
    """Clone ``url`` into a fresh ``dest`` at ``ref``; the commit it resolved to."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not _git(["clone", "--quiet", "--", url, str(dest)], log_file=log_file):
        raise CodeError(f"git clone of {url} failed (see the job's log)")
    # A branch or tag the clone knows; else a ref only the remote has (a commit, refs/pull/..).
    if ref != "HEAD" and not _git(["checkout", "--quiet", ref, "--"], log_file=log_file, cwd=dest):
        fetched = _git(["fetch", "--quiet", "origin", ref], log_file=log_file, cwd=dest)
        if not fetched or not _git(
            ["checkout", "--quiet", "--detach", "FETCH_HEAD"], log_file=log_file, cwd=dest
        ):
            raise CodeError(f"ref {ref!r} not found in {url}")
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=dest,
        env=_git_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    commit = done.stdout.strip()
    if done.returncode != 0 or not commit:
        raise CodeError(f"cannot resolve the checked-out commit: {done.stderr.strip()}")
    return commit


def prepare(code: dict[str, Any], dest: Path, *, cache: BundleCache, log_file: Path) -> str | None:
    """Put the experiment's code in ``dest``; the git commit, or None for a bundle."""
    if "bundle" in code:
        archive = cache.fetch(digest=code["bundle"], url=code["url"], size=code.get("size"))
        unpack(archive, dest)
        return None
    return git_checkout(code["git"], code.get("ref") or "HEAD", dest, log_file=log_file)
