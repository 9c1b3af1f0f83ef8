"""A bootstrap cell names the URL notebooks reach the control plane at, never a loopback one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from orchestrator.platforms.wheel import wheel_name
from orchestrator.settings import Settings
from orchestrator.urls import is_loopback, listen_url, public_url
from tests.e2e.conftest import Baton
from tests.support.api import create_user, login

PUBLIC = "https://baton.example.test"
PIP_LINE = (
    '[sys.executable, "-m", "pip", "install", "--quiet", '
    f"'{PUBLIC}/api/v1/bootstrap/wheel/{wheel_name()}'], check=True"
)
LOOPBACK = [
    "http://127.0.0.1:8000",
    "http://127.9.8.7",
    "http://localhost:8000/",
    "http://LOCALHOST.",
    "http://[::1]:8000",
    "http://0.0.0.0:8000",
    "http://[::]:8000",
    "http://baton.localhost",
]
REACHABLE = [
    PUBLIC,
    "http://10.1.2.3:8000",
    "https://[2001:db8::1]",
    "https://baton.example.test/sub",
]


@pytest.mark.parametrize("url", LOOPBACK)
def test_loopback_urls(url: str) -> None:
    assert is_loopback(url)


@pytest.mark.parametrize("url", REACHABLE)
def test_reachable_urls(url: str) -> None:
    assert not is_loopback(url)


def test_public_url_setting_is_checked_and_joined(tmp_path: Path) -> None:
    settings = Settings(BATON_PUBLIC_URL=f"{PUBLIC}/sub/", BATON_DATA_DIR=tmp_path)
    assert public_url(settings, "/api/v1/x") == f"{PUBLIC}/sub/api/v1/x"
    for bad in ("baton.example.test", "ftp://baton.example.test", "https://", f"{PUBLIC}/?a=1"):
        with pytest.raises(ValueError, match="BATON_PUBLIC_URL"):
            Settings(BATON_PUBLIC_URL=bad, BATON_DATA_DIR=tmp_path)


def test_listen_url_is_where_this_machine_reaches_the_api() -> None:
    assert listen_url("127.0.0.1", 8000) == "http://127.0.0.1:8000"
    assert listen_url("0.0.0.0", 9000) == "http://127.0.0.1:9000"
    assert listen_url("::", 9000) == "http://[::1]:9000"
    assert listen_url("10.0.0.5", 80) == "http://10.0.0.5:80"


def _bootstrap(
    tmp_path: Path, *args: str, public_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env["BATON_DATA_DIR"] = str(tmp_path)
    if public_url is not None:
        env["BATON_PUBLIC_URL"] = public_url
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "bootstrap", "kaggle", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize(
    "url", [None, "http://localhost:8000", "http://[::1]:8000", "http://0.0.0.0:8000"]
)
def test_baton_bootstrap_refuses_a_loopback_url(tmp_path: Path, url: str | None) -> None:
    done = _bootstrap(tmp_path, public_url=url)
    assert done.returncode == 2
    assert done.stdout == "", "no cell at all"
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: the public URL ") and "loopback" in line
    assert "BATON_PUBLIC_URL" in line and "--public-url" in line and "--allow-loopback" in line


def test_baton_bootstrap_installs_the_worker_from_the_public_url(tmp_path: Path) -> None:
    done = _bootstrap(tmp_path, "--public-url", PUBLIC)
    assert done.returncode == 0, done.stderr
    assert PIP_LINE in done.stdout
    assert f"os.environ['BATON_API'] = '{PUBLIC}'" in done.stdout
    assert "127.0.0.1" not in done.stdout


def test_baton_bootstrap_allows_loopback_when_asked(tmp_path: Path) -> None:
    done = _bootstrap(tmp_path, "--allow-loopback")
    assert done.returncode == 0, done.stderr
    assert f"'http://127.0.0.1:8000/api/v1/bootstrap/wheel/{wheel_name()}'" in done.stdout


def test_the_api_refuses_a_loopback_cell_unless_asked(
    client: TestClient, settings: Settings
) -> None:
    create_user(settings, "u@example.com")
    user = login(client, "u@example.com")
    for platform in ("kaggle", "colab", "shell"):
        refused = client.get(f"/api/v1/bootstrap/{platform}", headers=user)
        assert refused.status_code == 409, refused.text
        detail = refused.json()["detail"]
        assert (
            "loopback" in detail
            and "BATON_PUBLIC_URL" in detail
            and "allow_loopback=true" in detail
        )
    notebook = client.get("/api/v1/bootstrap/kaggle", params={"format": "ipynb"}, headers=user)
    assert notebook.status_code == 409
    allowed = client.get(
        "/api/v1/bootstrap/kaggle", params={"allow_loopback": "true"}, headers=user
    )
    assert allowed.status_code == 200
    assert f"{settings.public_url}/api/v1/bootstrap/wheel/" in allowed.json()["cell"]


def test_the_api_cell_installs_the_worker_from_the_public_url(
    settings: Settings, tmp_path: Path
) -> None:
    from orchestrator.app import create_app

    public = settings.model_copy(update={"public_url": PUBLIC})
    create_user(public, "u@example.com")
    with TestClient(create_app(public)) as client:
        reply = client.get("/api/v1/bootstrap/kaggle", headers=login(client, "u@example.com"))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert PIP_LINE in body["cell"]
    assert body["pip"] == f"{PUBLIC}/api/v1/bootstrap/wheel/{wheel_name()}"


@pytest.mark.e2e
def test_baton_serve_without_a_public_url_names_where_it_listens(
    baton_factory: Callable[..., Baton],
) -> None:
    """A real `baton serve` with no BATON_PUBLIC_URL: its own address, and no cell for notebooks."""
    baton = baton_factory()
    baton.login()
    refused = baton.http.get("/api/v1/bootstrap/kaggle")
    assert refused.status_code == 409, refused.text
    assert f"the public URL {baton.stack.url} is a loopback address" in refused.json()["detail"]
    allowed = baton.http.get("/api/v1/bootstrap/kaggle", params={"allow_loopback": True})
    assert f"'{baton.stack.url}/api/v1/bootstrap/wheel/{wheel_name()}'" in allowed.json()["cell"]
