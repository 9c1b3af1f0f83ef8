"""Fixtures for tests across hosts: namespaces, a control plane from the wheel, notebooks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import hosts
from tests.support.cp_host import ControlPlane
from tests.support.install import build_wheel, control_plane_venv
from tests.support.notebooks import (
    BARE_PLATFORM,
    KAGGLE_PLATFORM,
    Notebook,
    hidden_paths,
    make_notebook,
    ml_requirements,
    notebook_wheelhouse,
    platform_site,
    wheelhouse,
)

REPO = Path(__file__).resolve().parents[2]

_why_not = hosts.unavailable()
# Each test module sets ``pytestmark = MARKS``. A cold cache builds the platform's packages
# (torch among them) before the first notebook starts: minutes, once.
MARKS = [
    pytest.mark.e2e,
    pytest.mark.topology,
    pytest.mark.timeout(900),
    pytest.mark.skipif(_why_not is not None, reason=f"topology tests: {_why_not}"),
]


@pytest.fixture(scope="session")
def wheels() -> Path:
    return wheelhouse([*KAGGLE_PLATFORM, *BARE_PLATFORM, *ml_requirements(REPO)])


@pytest.fixture(scope="session")
def cp_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return control_plane_venv(build_wheel(REPO, tmp_path_factory.mktemp("wheel")))


@pytest.fixture
def topo() -> Iterator[hosts.Topology]:
    with hosts.topology() as made:
        yield made


@pytest.fixture
def control_plane(topo: hosts.Topology, cp_venv: Path, tmp_path: Path) -> Iterator[ControlPlane]:
    logs = tmp_path / "logs"
    logs.mkdir()
    cp = ControlPlane(topo.control_plane, cp_venv, topo.run_dir / "cp", logs)
    try:
        cp.start()
        yield cp
    finally:
        cp.stop()


NotebookFactory = Callable[..., Notebook]


@pytest.fixture
def notebook_factory(
    topo: hosts.Topology, control_plane: ControlPlane, wheels: Path
) -> NotebookFactory:
    """``make(role, platform=BARE_PLATFORM)``: a notebook host with a fresh venv."""
    nb_wheels = notebook_wheelhouse(wheels)
    hidden = hidden_paths(control_plane.private, control_plane.venv.resolve())

    def make(role: str, platform: tuple[str, ...] = BARE_PLATFORM) -> Notebook:
        return make_notebook(topo, role, hidden, platform_site(platform, wheels), nb_wheels)

    return make
