"""Baton as a user gets it: a wheel built from the repository, installed in a venv of its own.

Both steps are cached under ``BATON_TEST_CACHE`` (default /tmp/baton-test-cache): the wheel
by a hash of the sources it is built from, the venv by a hash of the wheel, so a second run
costs nothing. Entries unused for ``KEEP_UNUSED`` are removed when a wheel is built, so a
machine that runs the suite for months does not fill /tmp with one venv per commit. The venv
is made from an interpreter every user can run and is left readable by all (owned by whoever
built it, root in CI), so tests may run it as another Unix user.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

CACHE_ROOT = Path(os.environ.get("BATON_TEST_CACHE", "/tmp/baton-test-cache"))
# What the wheel is built from (pyproject's packages.find and readme); tests/ and docs/ are not.
WHEEL_INPUTS = ("pyproject.toml", "README.md", "orchestrator", "worker", "ml", "baton_client")
# Reproducible zip timestamps: the same sources give the same wheel bytes, so the same venv.
SOURCE_DATE_EPOCH = "1700000000"
# Interpreters to build the venv from, best first; the first one all users can run wins.
BASE_PYTHONS = ("/usr/bin/python3.11", "/usr/bin/python3")
KEEP_UNUSED = 2 * 24 * 3600  # seconds; long enough for every run of a working day to share
LAST_USED = ".last-used"


def wheel_sources(repo: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files that go into the wheel."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", *WHEEL_INPUTS],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted(name for name in set(listed.split("\0")) if name and (repo / name).is_file())


def source_digest(repo: Path) -> str:
    digest = hashlib.sha256()
    for name in wheel_sources(repo):
        digest.update(name.encode() + b"\0" + (repo / name).read_bytes() + b"\0")
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """Serialise builders of one cache entry across processes (pytest runs, other helpers);
    the entry is marked used, which keeps it from ``_prune_unused``."""
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    CACHE_ROOT.chmod(0o755)
    with (CACHE_ROOT / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
        if (CACHE_ROOT / name).is_dir():
            (CACHE_ROOT / name / LAST_USED).touch()


def _prune_unused() -> None:
    """Remove cache entries nobody has used for ``KEEP_UNUSED`` (under their own lock, so an
    entry a run is building or about to use is never removed under it)."""
    cutoff = time.time() - KEEP_UNUSED

    def unused(entry: Path) -> bool:
        stamp = entry / LAST_USED  # entries from before the marker: the directory's own time
        return (stamp if stamp.exists() else entry).stat().st_mtime < cutoff

    for entry in [*CACHE_ROOT.glob("wheel-*"), *CACHE_ROOT.glob("cp-*")]:
        if unused(entry):
            with _locked(entry.name):
                if entry.exists() and unused(entry):
                    shutil.rmtree(entry, ignore_errors=True)


def _open_to_all(root: Path) -> None:
    """World-readable (and -traversable where executable): other users run this tree."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        extra = stat.S_IRGRP | stat.S_IROTH
        if path.is_dir() or mode & stat.S_IXUSR:
            extra |= stat.S_IXGRP | stat.S_IXOTH
        path.chmod(mode | extra)


def build_wheel(repo: Path, out: Path) -> Path:
    """The baton wheel built from ``repo``'s sources (a clean copy: no stale build/ leaks in)."""
    entry = CACHE_ROOT / f"wheel-{source_digest(repo)[:20]}"
    _prune_unused()
    with _locked(entry.name):
        if not any(entry.glob("baton-*.whl")):
            with tempfile.TemporaryDirectory(dir=CACHE_ROOT, prefix=".build-") as tmp:
                src, dist = Path(tmp) / "src", Path(tmp) / "dist"
                for name in wheel_sources(repo):
                    (src / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(repo / name, src / name)
                subprocess.run(
                    [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, src],
                    check=True,
                    capture_output=True,
                    env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH},
                )
                dist.chmod(0o755)
                _open_to_all(dist)
                dist.rename(entry)
    (wheel,) = entry.glob("baton-*.whl")
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != entry.resolve():
        shutil.copy2(wheel, out / wheel.name)
    return out / wheel.name


def _usable_by_all(path: Path) -> bool:
    """Every directory above ``path`` is traversable by others and the file is executable."""
    real = path.resolve()
    if not real.is_file() or not real.stat().st_mode & stat.S_IXOTH:
        return False
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in real.parents)


def base_python() -> str:
    candidates = [*BASE_PYTHONS, getattr(sys, "_base_executable", sys.executable)]
    for candidate in candidates:
        if _usable_by_all(Path(candidate)):
            return candidate
    raise RuntimeError(f"no Python that every user can run among {candidates}")


def control_plane_venv(wheel: Path, extras: tuple[str, ...] = ()) -> Path:
    """A venv holding the installed ``wheel`` (not editable) and its dependencies.

    Returns the venv's directory; run ``<venv>/bin/baton`` from a cwd outside the repository
    with PYTHONPATH unset and nothing of the checkout is importable.
    """
    key = hashlib.sha256(f"{_file_digest(wheel)} {sorted(extras)}".encode()).hexdigest()[:20]
    venv = CACHE_ROOT / f"cp-{key}"
    done = venv / ".baton-complete"
    with _locked(venv.name):
        if not done.exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([base_python(), "-m", "venv", venv], check=True, capture_output=True)
            target = f"{wheel.resolve()}[{','.join(extras)}]" if extras else str(wheel.resolve())
            install = subprocess.run(
                [venv / "bin" / "python", "-m", "pip", "install", "-q", target],
                cwd=venv,
                capture_output=True,
                text=True,
                env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            )
            if install.returncode != 0:
                raise RuntimeError(f"installing {wheel.name} failed:\n{install.stderr[-4000:]}")
            _open_to_all(venv)
            done.write_text(str(wheel) + "\n")
    return venv


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for an installed Baton: no PYTHONPATH, no venv and no Baton settings
    of the test runner (only ``extra``)."""
    dropped = ("PYTHONPATH", "VIRTUAL_ENV", "DATABASE_URL", "REDIS_URL")
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("BATON_")}
    env.update(extra)
    return env
