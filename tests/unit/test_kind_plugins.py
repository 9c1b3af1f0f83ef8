"""Kinds are plugins: the control plane loads the workloads through `baton.kinds`, never by
importing `ml` itself, and never pulls in torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from orchestrator.kinds import KINDS

REPO = Path(__file__).resolve().parents[2]

_CHECK = (
    "import sys; import orchestrator.app, orchestrator.kinds as k; "
    "assert 'ml.arc.ttt' in k.KINDS and 'ml.video.train' in k.KINDS, sorted(k.KINDS); "
    "assert 'torch' not in sys.modules, 'torch imported'"
)


def test_the_control_plane_loads_ml_kinds_without_torch() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _CHECK], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert run.returncode == 0, run.stderr[-3000:]


def _imports_of(path: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.append(node.module)
    return modules


def test_no_orchestrator_module_imports_ml() -> None:
    offenders = [
        f"{path.relative_to(REPO)}: {module}"
        for path in sorted((REPO / "orchestrator").rglob("*.py"))
        for module in _imports_of(path)
        if module == "ml" or module.startswith("ml.")
    ]
    assert offenders == []


def test_ml_kinds_come_from_the_entry_point_and_name_their_wheel() -> None:
    ml_kinds = {name: kind for name, kind in KINDS.items() if name.startswith("ml.")}
    assert set(ml_kinds) == {
        "ml.arc.ttt",
        "ml.arc.eval",
        "ml.video.dataset",
        "ml.video.train",
        "ml.video.compare",
        "ml.video.describe",
    }
    assert {kind.wheel for kind in ml_kinds.values()} == {"baton_ml"}
    assert KINDS["command"].wheel is None and KINDS["demo.counter"].wheel is None
