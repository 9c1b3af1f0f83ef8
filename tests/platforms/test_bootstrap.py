"""Notebook bootstrap: cells and notebooks per platform, the worker wheel, a cell run for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from fastapi.testclient import TestClient

from orchestrator.platforms.bootstrap import TARGETS, render
from orchestrator.platforms.rotation import worker_pip
from orchestrator.platforms.wheel import wheel_name
from orchestrator.settings import Settings
from tests.e2e.conftest import Baton
from tests.support.api import create_user, create_worker_token, login, make_settings

SECRET_READ = {
    "kaggle": "UserSecretsClient().get_secret",
    "colab": "userdata.get",
    "paperspace": "getpass.getpass",
    "studiolab": "getpass.getpass",
    "shell": "getpass.getpass",
}


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    """A control plane notebooks can reach: a loopback one gets no cells (test_public_url)."""
    return make_settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        BATON_PUBLIC_URL="https://baton.example.test",
    )


@pytest.fixture
def user(client: TestClient, settings: Settings) -> dict[str, str]:
    create_user(settings, "u@example.com")
    return login(client, "u@example.com")


@pytest.mark.parametrize("platform", sorted(TARGETS))
def test_cell_and_notebook_never_hold_the_token(
    client: TestClient, settings: Settings, user: dict[str, str], platform: str
) -> None:
    token = create_worker_token(settings)
    reply = client.get(f"/api/v1/bootstrap/{platform}", headers=user)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    cell = body["cell"]
    compile(cell, f"<{platform} cell>", "exec")  # valid Python
    assert SECRET_READ[platform] in cell and "BATON_WORKER_TOKEN" in cell
    assert f"/api/v1/bootstrap/wheel/{wheel_name()}" in cell
    assert "from worker.__main__ import main" in cell

    notebook = client.get(f"/api/v1/bootstrap/{platform}", params={"format": "ipynb"}, headers=user)
    assert notebook.status_code == 200
    assert notebook.headers["content-type"].startswith("application/x-ipynb+json")
    assert f"baton-worker-{platform}.ipynb" in notebook.headers["content-disposition"]
    parsed = nbformat.reads(notebook.text, as_version=4)
    nbformat.validate(parsed)
    assert parsed.nbformat == 4
    assert "".join(parsed.cells[1].source) == cell
    for text in (json.dumps(body), notebook.text):
        assert token not in text and "bwt_" not in text


def test_colab_states_the_free_tier_terms(client: TestClient, user: dict[str, str]) -> None:
    body = client.get("/api/v1/bootstrap/colab", headers=user).json()
    assert "paid compute units" in body["terms"]
    assert "paid compute units" in body["cell"]
    notebook = client.get(
        "/api/v1/bootstrap/colab", params={"format": "ipynb"}, headers=user
    ).json()
    assert notebook["metadata"]["accelerator"] == "GPU"
    assert "paid compute units" in "".join(notebook["cells"][0]["source"])


def test_shell_script_is_valid_bash(
    client: TestClient, user: dict[str, str], tmp_path: Path
) -> None:
    script = client.get("/api/v1/bootstrap/shell", headers=user).json()["script"]
    path = tmp_path / "worker.sh"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0
    assert "BATON_WORKER_TOKEN:?" in script and "bwt_" not in script


def test_unknown_platform_and_no_login(client: TestClient, user: dict[str, str]) -> None:
    assert client.get("/api/v1/bootstrap/nowhere", headers=user).status_code == 404
    assert client.get("/api/v1/bootstrap/kaggle").status_code == 401


def test_the_wheel_installs_and_imports_with_httpx_alone(
    client: TestClient, tmp_path: Path
) -> None:
    reply = client.get(f"/api/v1/bootstrap/wheel/{wheel_name()}")
    assert reply.status_code == 200
    wheel = tmp_path / wheel_name()
    wheel.write_bytes(reply.content)
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    subprocess.run([*pip, str(wheel)], check=True, timeout=120)
    assert (target / "bin" / "baton-worker").exists()
    probe = "import sys, worker.__main__, worker.platforms, worker.deadline; print(worker.__file__)"
    code = f"import sys; sys.path.insert(0, {str(target)!r}); {probe}"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(target / "worker" / "__init__.py")
    assert client.get("/api/v1/bootstrap/wheel/other-1.0-py3-none-any.whl").status_code == 404


def _fresh_python(root: Path) -> Path:
    """A new venv that sees this one's packages (httpx) but not this repository's `worker`."""
    venv.create(root)  # pip too comes from this venv, through the .pth file
    site = next((root / "lib").glob("python3*/site-packages"))
    # A plain path in a .pth file: no editable-install finder comes along with it.
    (site / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root / "bin" / "python"


@pytest.mark.e2e
def test_a_bootstrap_cell_brings_up_a_worker_that_runs_a_job(
    baton_factory: Callable[..., Baton], tmp_path: Path
) -> None:
    python = _fresh_python(tmp_path / "venv")
    baton = baton_factory(BATON_CLAIM_WAIT_SECONDS="2")  # idle soon after the job
    # What GET /api/v1/bootstrap/paperspace renders when BATON_PUBLIC_URL is this stack's URL.
    settings = baton.settings.model_copy(update={"public_url": baton.stack.url})
    cell = render("paperspace", api_url=baton.stack.url, pip=worker_pip(settings)).cell
    (tmp_path / "cell.py").write_text(cell)
    experiment_id = baton.submit(
        name="counter", kind="demo.counter", config={"steps": 5, "step_seconds": 0.05}
    )
    env = {
        **os.environ,
        "BATON_WORKER_TOKEN": baton.worker_token,  # what the platform's secret store holds
        "BATON_WORKER_DIR": str(tmp_path / "work"),
        "BATON_IDLE_EXIT": "3",
        "PYTHONPATH": "",
    }
    done = subprocess.run(
        [str(python), str(tmp_path / "cell.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    installed = next((tmp_path / "venv" / "lib").glob("python3*/site-packages/worker/agent.py"))
    assert installed.exists(), "the cell must install the worker wheel into its own Python"
    body = baton.get(experiment_id)
    assert body["status"] == "succeeded", (body, done.stderr[-3000:])


def test_baton_bootstrap_command(tmp_path: Path) -> None:
    notebook = tmp_path / "kaggle.ipynb"
    env = {
        **os.environ,
        "BATON_DATA_DIR": str(tmp_path),
        "BATON_PUBLIC_URL": "https://baton.example",
    }
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "bootstrap", "kaggle", "--ipynb", str(notebook)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "UserSecretsClient" in done.stdout and "'https://baton.example'" in done.stdout
    parsed = nbformat.read(notebook, as_version=4)
    nbformat.validate(parsed)
    assert "".join(parsed.cells[1].source) == done.stdout
    unknown = subprocess.run(
        [sys.executable, "-m", "orchestrator", "bootstrap", "nowhere"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert unknown.returncode == 2 and "unknown platform" in unknown.stderr
