"""A notebook's Python, as a platform gives it: the platform's packages, nothing of Baton's.

- ``wheelhouse(reqs)``: every wheel a notebook may install, fetched once with the machine's
  own pip configuration (this machine's local indexes) and cached under the test cache.
- ``platform_site(reqs)``: the third-party packages a platform ships (torch, numpy,
  transformers, ... on Kaggle; httpx alone on a bare one), installed once with
  ``pip install --target`` and shared read-only by every notebook, as a platform image is.
- ``Notebook``: a FRESH virtualenv in the notebook user's home whose ``.pth`` adds the
  platform site (that is how a notebook's Python sees its platform's packages), with pip
  pointed at a wheelhouse and at no index. Everything Baton-side it gets from the control
  plane: the worker wheel, and through the worker the ``ml`` wheel and the job's code.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import orchestrator
from tests.support.hosts import NotebookHost, Topology
from tests.support.install import CACHE_ROOT, _locked, _open_to_all, base_python

REPO = Path(__file__).resolve().parents[2]
PYTHON_TAG = "python3.11"
# A bare notebook: a Python whose only third-party package the worker needs is httpx.
BARE_PLATFORM = ("httpx",)
# What a Kaggle image has of Baton's ml requirements (it also has peft and accelerate, left
# out here so that the worker's own install of the ml wheel's requirements is exercised).
KAGGLE_PLATFORM = (
    "torch==2.13.0",
    "numpy",
    "transformers",
    "tokenizers",
    "safetensors",
    "httpx",
    "tqdm",
    "matplotlib",
    "tensorboard",
    "wandb",
)
# Never offered to a notebook's pip: a requirement must use the platform's own torch.
PLATFORM_ONLY = ("torch",)


def ml_requirements(repo: Path) -> list[str]:
    """The ``ml`` extra of the repository's pyproject: what the ml wheel will require."""
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    return list(project["optional-dependencies"]["ml"])


def _key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _pip(*args: str | Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", *map(str, args)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip {' '.join(map(str, args[:3]))} failed:\n{done.stderr[-4000:]}")


def _cached(name: str, build: object) -> Path:
    """``CACHE_ROOT/name``, built by ``build(tmp_dir)`` once, then shared read-only."""
    entry = CACHE_ROOT / name
    with _locked(name):
        if not entry.exists():
            tmp = Path(tempfile.mkdtemp(dir=CACHE_ROOT, prefix=f".{name}-"))
            try:
                build(tmp)  # type: ignore[operator]
                _open_to_all(tmp)
                tmp.rename(entry)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return entry


def wheelhouse(requirements: list[str]) -> Path:
    """Wheels for ``requirements`` and all they depend on (sdists built into wheels)."""
    reqs = sorted(set(requirements))
    return _cached(f"wheels-{_key(reqs)}", lambda tmp: _pip("wheel", "-q", "-w", tmp, *reqs))


def platform_site(requirements: tuple[str, ...], wheels: Path) -> Path:
    """A site dir holding ``requirements``, installed from ``wheels`` only."""
    reqs = sorted(requirements)

    def build(tmp: Path) -> None:
        _pip("install", "-q", "--no-index", "--find-links", wheels, "--target", tmp, *reqs)

    return _cached(f"platform-{_key(reqs, wheels.name)}", build)


def notebook_wheelhouse(wheels: Path) -> Path:
    """``wheels`` less what only the platform may provide (hard links: no copies)."""

    def build(tmp: Path) -> None:
        for wheel in wheels.glob("*.whl"):
            if wheel.name.split("-", 1)[0].lower() not in PLATFORM_ONLY:
                os.link(wheel, tmp / wheel.name)

    return _cached(f"nb-{wheels.name}", build)


@dataclass
class Notebook:
    """A notebook host's Python: a fresh venv over the platform site, run as its user."""

    host: NotebookHost
    platform: Path
    wheels: Path

    @property
    def venv(self) -> Path:
        return self.host.user.home / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self, **extra: str) -> dict[str, str]:
        return self.host.env(
            PATH=f"{self.venv / 'bin'}:/usr/bin:/bin",
            VIRTUAL_ENV=str(self.venv),
            PIP_NO_INDEX="1",
            PIP_FIND_LINKS=str(self.wheels),
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            **extra,
        )

    def argv(self, argv: list[str | os.PathLike[str]]) -> list[str]:
        return self.host.argv(argv)

    def run(
        self, argv: list[str | os.PathLike[str]], *, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on the notebook as its user; nothing of the test's env goes along."""
        return subprocess.run(
            self.argv(argv),
            env=self.env(),
            cwd="/",
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def pip_config(self) -> None:
        """pip's own config in the user's home, for pips the worker starts with other envs."""
        config = self.host.user.home / ".config" / "pip"
        config.mkdir(parents=True)
        (config / "pip.conf").write_text(f"[global]\nno-index = true\nfind-links = {self.wheels}\n")
        for path in (config.parent, config, config / "pip.conf"):
            os.chown(path, self.host.user.uid, self.host.user.gid)

    def create(self) -> None:
        """A fresh venv, as the notebook user, whose Python sees the platform's packages."""
        self.pip_config()
        made = self.run([base_python(), "-m", "venv", self.venv])
        assert made.returncode == 0, made.stderr
        site = self.venv / "lib" / PYTHON_TAG / "site-packages"
        pth = site / "zz-platform.pth"
        pth.write_text(f"import site; site.addsitedir({str(self.platform)!r})\n")
        os.chown(pth, self.host.user.uid, self.host.user.gid)

    def install_worker(self, wheel_url: str) -> subprocess.CompletedProcess[str]:
        """``pip install`` the worker wheel from the control plane, as a bootstrap cell does."""
        return self.run([self.python, "-m", "pip", "install", "-q", wheel_url], timeout=300)

    def start_agent(
        self, *, api: str, token: str, name: str, log: Path, extra: tuple[str, ...] = ()
    ) -> subprocess.Popen[bytes]:
        argv: list[str | os.PathLike[str]] = [
            self.venv / "bin" / "baton-worker",
            "--api",
            api,
            "--name",
            name,
            "--platform",
            "local",
            "--claim-wait",
            "5",
            "--kill-grace",
            "10",
            *extra,
        ]
        with log.open("ab") as out:
            return subprocess.Popen(
                self.argv(argv),
                env=self.env(BATON_WORKER_TOKEN=token),
                cwd="/",
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def kill(self) -> None:
        """SIGKILL everything on this notebook host at once (a Colab disconnect)."""
        self.host.kill_all()


def checkout_paths() -> list[Path]:
    """Everything of the checkout a notebook must not see: the repo, its venv, its sources."""
    paths = {REPO, Path(orchestrator.__file__).resolve().parents[1]}
    if sys.prefix != sys.base_prefix:
        paths.add(Path(sys.prefix).resolve())
    return sorted(paths)


def outermost(paths: list[Path]) -> list[Path]:
    """Drop paths inside another: once a parent is covered, its children are gone."""
    return [p for p in paths if not any(q != p and q in p.parents for q in paths)]


def hidden_paths(*extra: Path) -> list[Path]:
    """What a notebook host covers: the checkout and ``extra`` (a control plane's data)."""
    return outermost([*checkout_paths(), *extra])


def make_notebook(
    topo: Topology, role: str, hidden: list[Path], platform: Path, wheels: Path
) -> Notebook:
    """A notebook host named ``role`` with a fresh venv over ``platform``'s packages."""
    notebook = Notebook(topo.add_notebook(role, hidden), platform, wheels)
    notebook.create()
    return notebook
