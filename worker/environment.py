"""A job's Python environment: its experiment's requirements in a virtualenv over the platform.

A notebook's Python already has what the platform installed (torch built for its CUDA,
numpy, ...). An experiment's `requirements` go into a virtualenv that sees all of that and
puts its own packages first; pip is constrained to the platform's torch / CUDA wheels, so a
requirement can never swap them out. One virtualenv per distinct requirement set, built
once and then reused by every attempt that asks for the same set.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PIP_TAIL_LINES = 20
_TAIL_BYTES = 64 * 1024
_BIN = "Scripts" if os.name == "nt" else "bin"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_ARCHIVES = (".whl", ".tar.gz", ".tgz", ".tar.bz2", ".zip")
_PINNED = frozenset({"torch", "torchvision", "torchaudio", "triton"})
_PTH_NAME = "_baton_platform.pth"

# Run by the platform's interpreter: what it sees (site dirs, in sys.path order) and the
# versions of the packages a requirement must never replace.
_PROBE = r"""
import importlib.metadata, json, os, re, site, sys
dirs = list(site.getsitepackages())
if site.ENABLE_USER_SITE:
    dirs.append(site.getusersitepackages())
wanted = {os.path.abspath(d) for d in dirs}
site_dirs = []
for p in sys.path:
    p = os.path.abspath(p) if p else p
    if p in wanted and p not in site_dirs:
        site_dirs.append(p)
pinned = set(sys.argv[1:])
pins = {}
for dist in importlib.metadata.distributions():
    name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
    if name in pinned or name.startswith("nvidia-"):
        pins.setdefault(name, dist.version)  # the first on sys.path is the one imported
print(json.dumps({"version": sys.version, "prefix": sys.prefix,
                  "site_dirs": site_dirs, "pins": pins}))
"""


class EnvironmentFailed(Exception):
    """The job's environment could not be built.

    str(exc) is a one-line summary, then (when pip ran) pip's last lines.
    """


@dataclass(frozen=True)
class JobEnvironment:
    python: str  # interpreter the job must run with
    bin_dir: str | None  # prepended to PATH for the job (None when no venv)

    def apply(self, env: dict[str, str]) -> dict[str, str]:
        """The job's environment variables with this virtualenv activated (a new dict)."""
        out = dict(env)
        if self.bin_dir is None:
            return out
        path = env.get("PATH")
        out["PATH"] = self.bin_dir + os.pathsep + path if path else self.bin_dir
        out["VIRTUAL_ENV"] = str(Path(self.bin_dir).parent)
        out.pop("PYTHONHOME", None)
        return out


@dataclass(frozen=True)
class _Platform:
    """What the base interpreter sees; part of every environment's cache key."""

    version: str
    prefix: str
    site_dirs: tuple[str, ...]
    pins: tuple[tuple[str, str], ...]


class Environments:
    """Builds and caches job environments under `cache_dir` for one base interpreter.

    Layout: `builds/<key>-<random>/` is a virtualenv (it never moves: pip writes its
    absolute path into scripts); `<key>` is a symlink to the finished one, published by an
    atomic rename, so a half-built environment is never seen. `locks/<key>.lock` is held
    (flock) while building, which serialises threads and processes preparing the same set.
    """

    def __init__(self, *, cache_dir: Path, base_python: str = sys.executable) -> None:
        self.cache_dir = cache_dir
        self.base_python = base_python
        self._platform: _Platform | None = None

    def prepare(
        self, requirements: Sequence[str], *, code_dir: Path | None, log: Path
    ) -> JobEnvironment:
        """The environment for `requirements`, built (pip output appended to `log`) if new."""
        entries = sorted({_checked(r) for r in requirements})
        if not entries:
            return JobEnvironment(python=self.base_python, bin_dir=None)
        args, files = _resolve(entries, code_dir)
        platform = self._probe()
        key = _key(self.base_python, platform, entries, files)
        published = self.cache_dir / key
        if not _usable(published):
            with self._locked(key):
                if not _usable(published):
                    self._build(key, entries, args, platform, log)
                    return _activated(published)
        _append(log, f"[baton] requirements already installed: {' '.join(entries)}")
        return _activated(published)

    def _probe(self) -> _Platform:
        if self._platform is None:
            try:
                run = subprocess.run(
                    [self.base_python, "-c", _PROBE, *sorted(_PINNED)],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise EnvironmentFailed(f"cannot run {self.base_python}: {exc}") from exc
            if run.returncode != 0:
                raise EnvironmentFailed(
                    f"cannot inspect {self.base_python} (exit {run.returncode}):\n"
                    + "\n".join(run.stderr.splitlines()[-PIP_TAIL_LINES:])
                )
            seen = json.loads(run.stdout)
            self._platform = _Platform(
                version=seen["version"],
                prefix=seen["prefix"],
                site_dirs=tuple(seen["site_dirs"]),
                pins=tuple(sorted(seen["pins"].items())),
            )
        return self._platform

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        locks = self.cache_dir / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        # flock belongs to the open file description: two threads of this process
        # opening the file exclude each other just as two processes do.
        with open(locks / f"{key}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _build(
        self, key: str, entries: list[str], args: list[str], platform: _Platform, log: Path
    ) -> None:
        builds = self.cache_dir / "builds"
        builds.mkdir(parents=True, exist_ok=True)
        # Under the lock nobody else builds this key: any other build dir of it is a leftover
        # of a crash (or a published env whose files vanished) and is never reused.
        for stale in builds.glob(f"{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        root = builds / f"{key}-{uuid.uuid4().hex[:8]}"
        _append(log, f"[baton] installing requirements into {root}: {' '.join(entries)}")
        try:
            _run_logged(
                [
                    self.base_python,
                    "-m",
                    "venv",
                    "--system-site-packages",
                    "--without-pip",
                    str(root),
                ],
                log=log,
                what="creating the virtualenv",
            )
            python = str(root / _BIN / _python_name())
            _see_platform(python, platform.site_dirs)
            _ensure_pip(python, log)
            pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
            if platform.pins:
                constraints = root / "baton-constraints.txt"
                constraints.write_text("".join(f"{n}=={v}\n" for n, v in platform.pins))
                pip += ["-c", str(constraints)]
                _append(log, "[baton] kept at the platform's versions: " + _pin_list(platform))
            what = "pip install " + " ".join(entries)
            _run_logged(pip + args, log=log, what=what, env=_pip_env())
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        link = self.cache_dir / f".{key}.{uuid.uuid4().hex[:8]}.link"
        os.symlink(Path("builds") / root.name, link)
        os.replace(link, self.cache_dir / key)
        _append(log, f"[baton] environment ready: {root}")


def _checked(entry: str) -> str:
    """One requirement entry, stripped; refuses what pip would read as an option."""
    text = entry.strip()
    if not text:
        raise EnvironmentFailed("empty requirement entry")
    if text.startswith("-"):
        raise EnvironmentFailed(
            f"requirement {entry!r}: options are not allowed, only requirements"
        )
    if any(c in text for c in "\r\n\0"):
        raise EnvironmentFailed(f"requirement {entry!r}: must be one line")
    return text


def _is_path(entry: str) -> bool:
    if _URL.match(entry) or "@" in entry:  # a URL, or PEP 508 `name @ url`: pip's business
        return False
    return (
        entry.startswith((".", "/"))
        or "/" in entry
        or os.sep in entry
        or entry.lower().endswith(_ARCHIVES)
    )


def _resolve(entries: list[str], code_dir: Path | None) -> tuple[list[str], dict[str, str]]:
    """pip's arguments for `entries` and the content hash of each local path they name."""
    args: list[str] = []
    files: dict[str, str] = {}
    for entry in entries:
        if not _is_path(entry):
            args.append(entry)
            continue
        if code_dir is None:
            raise EnvironmentFailed(
                f"requirement {entry!r} is a local path, but the experiment has no code"
            )
        base = code_dir.resolve()
        target = (base / entry).resolve()
        if not target.is_relative_to(base):
            raise EnvironmentFailed(f"requirement {entry!r} points outside the experiment's code")
        if not target.exists():
            raise EnvironmentFailed(f"requirement {entry!r} is not in the experiment's code")
        files[entry] = _content_hash(target)
        args.append(str(target))
    return args, files


def _content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    members = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for member in members:
        digest.update(str(member.relative_to(path) if path.is_dir() else "").encode() + b"\0")
        with open(member, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def _key(base_python: str, platform: _Platform, entries: list[str], files: dict[str, str]) -> str:
    described = json.dumps(
        {
            "python": os.path.abspath(base_python),
            "platform": [platform.version, platform.prefix, platform.site_dirs, platform.pins],
            "requirements": entries,
            "files": files,
        },
        sort_keys=True,
    )
    # 20 hex digits (80 bits) keep script shebangs under the kernel's length limit.
    return hashlib.sha256(described.encode()).hexdigest()[:20]


def _activated(published: Path) -> JobEnvironment:
    root = published.resolve()  # the build dir: the path pip wrote into the venv's scripts
    return JobEnvironment(python=str(root / _BIN / _python_name()), bin_dir=str(root / _BIN))


def _usable(published: Path) -> bool:
    return (published / _BIN / _python_name()).exists()


def _python_name() -> str:
    return "python.exe" if os.name == "nt" else "python"


def _pin_list(platform: _Platform) -> str:
    return ", ".join(f"{n}=={v}" for n, v in platform.pins)


def _see_platform(python: str, site_dirs: tuple[str, ...]) -> None:
    """Make the new venv see every site dir the base interpreter sees, after its own.

    `--system-site-packages` shows the *base installation*'s packages; when the notebook's
    Python is itself a virtualenv, its packages live elsewhere. A .pth in the new venv's
    site-packages adds those dirs (and runs their .pth files) behind the venv's own.
    """
    run = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if run.returncode != 0:
        raise EnvironmentFailed(f"the new virtualenv's python does not run: {run.stderr.strip()}")
    purelib = Path(run.stdout.strip())
    purelib.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in site_dirs)
    (purelib / _PTH_NAME).write_text(lines)


def _ensure_pip(python: str, log: Path) -> None:
    """pip for the venv: the platform's own (seen through the venv), else ensurepip's.

    Borrowing saves seconds per environment and works where the system Python lacks
    ensurepip (Debian/Ubuntu without python3-venv, as on Colab).
    """
    probe = subprocess.run(
        [python, "-m", "pip", "--version"], capture_output=True, timeout=120, check=False
    )
    if probe.returncode != 0:
        _run_logged([python, "-m", "ensurepip", "--default-pip"], log=log, what="installing pip")


def _pip_env() -> dict[str, str]:
    """The agent's environment (PIP_INDEX_URL, PIP_FIND_LINKS, ... apply) minus what would
    make pip install anywhere but into the venv."""
    env = dict(os.environ)
    for name in ("PIP_TARGET", "PIP_PREFIX", "PIP_ROOT", "PYTHONHOME"):
        env.pop(name, None)
    env["PIP_USER"] = "0"
    return env


def _append(log: Path, line: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def _tail(log: Path, start: int, limit: int = _TAIL_BYTES) -> str:
    with open(log, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(start, size - limit))
        return handle.read().decode("utf-8", errors="replace")


def _run_logged(cmd: list[str], *, log: Path, what: str, env: dict[str, str] | None = None) -> None:
    """Runs `cmd` with its output appended to `log`; EnvironmentFailed with its last lines."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        start = handle.tell()
        try:
            code = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, env=env
            ).returncode
        except OSError as exc:
            raise EnvironmentFailed(f"{what} could not start: {exc}") from exc
    if code != 0:
        lines = _tail(log, start).splitlines()[-PIP_TAIL_LINES:]
        raise EnvironmentFailed(f"{what} failed (exit {code}):\n" + "\n".join(lines))
