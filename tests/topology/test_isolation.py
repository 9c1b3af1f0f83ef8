"""The harness isolates: a notebook host sees the bridge and its own files, nothing else."""

from __future__ import annotations

import httpx

from tests.support.cp_host import ControlPlane
from tests.support.hosts import BRIDGE_NET, Topology
from tests.topology.conftest import MARKS, REPO, NotebookFactory

pytestmark = MARKS


def test_notebook_reaches_only_the_control_plane_and_reads_none_of_baton(
    topo: Topology, control_plane: ControlPlane, notebook_factory: NotebookFactory
) -> None:
    notebook = notebook_factory("a")
    secret_files = [REPO / "pyproject.toml", control_plane.data_dir / "baton.db"]
    for path in [*secret_files, control_plane.data_dir]:
        assert path.exists(), f"{path} should exist for root, else the checks below prove nothing"
        denied = notebook.run(["test", "-r", str(path)])
        assert denied.returncode != 0, f"the notebook user can read {path}"
    for path in secret_files:
        cat = notebook.run(["cat", str(path)])
        assert cat.returncode != 0 and not cat.stdout, f"the notebook user read {path}"

    # The fresh venv has the platform's packages and nothing of Baton.
    imports = "import httpx\nfor m in ('orchestrator', 'worker', 'ml', 'baton_client'):\n"
    imports += "    try:\n        __import__(m)\n    except ImportError:\n        continue\n"
    imports += "    raise SystemExit(f'{m} is importable')\n"
    python = notebook.run([notebook.python, "-c", imports])
    assert python.returncode == 0, python.stdout + python.stderr

    # One route: the bridge. The test's own address and the internet are unreachable
    # (asked of the routing table: no packet is sent).
    routes = notebook.run(["ip", "-4", "route"]).stdout.strip().splitlines()
    assert [r.split() for r in routes] == [
        f"{BRIDGE_NET}.{topo.index}.0/24 dev eth0 proto kernel scope link src "
        f"{notebook.host.address}".split()
    ], routes
    for address in (topo.laptop_address, "1.1.1.1", "10.0.0.1"):
        lookup = notebook.run(["ip", "route", "get", address])
        assert lookup.returncode != 0 and "unreachable" in lookup.stderr, (address, lookup)

    # ...and the control plane answers on its public address.
    health = notebook.run(
        [
            notebook.python,
            "-c",
            f"import httpx; print(httpx.get({control_plane.url + '/healthz'!r}).status_code)",
        ]
    )
    assert health.stdout.strip() == "200", health.stderr
    assert httpx.get(f"{control_plane.url}/healthz").status_code == 200
