"""The baton wheel, installed in a fresh venv with no checkout, runs the control plane.

Every command runs from a directory outside the repository with PYTHONPATH unset, so only
what the wheel ships can be found: migrations, templates, static files, Lua scripts.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.platforms.wheel import wheel_name
from tests.support.install import build_wheel, clean_env, control_plane_venv, wheel_sources
from tests.support.stack import SECRET, Proc, free_port, wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PUBLIC_URL = "https://baton.example.test"
PACKAGES = ("orchestrator/", "worker/", "baton_client/", "ml/")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(REPO, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def venv(wheel: Path) -> Path:
    return control_plane_venv(wheel)


def _run(venv: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@contextlib.contextmanager
def _started(venv: Path, cwd: Path, *args: str, **env: str) -> Iterator[Proc]:
    log = cwd / f"{args[0]}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [str(venv / "bin" / "baton"), *args],
            cwd=cwd,
            env=clean_env(PYTHONUNBUFFERED="1", **env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    proc = Proc(args[0], popen, log)
    try:
        yield proc
    finally:
        proc.stop(timeout=60)


def _wait_healthy(proc: Proc, url: str) -> None:
    def healthy() -> bool:
        assert proc.alive(), f"{proc.name} exited:\n{proc.output()[-3000:]}"
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        return False

    wait_until(healthy, timeout=90, what=f"{proc.name} to answer /healthz")


def _login(http: httpx.Client, email: str, password: str) -> None:
    reply = http.post("/auth/login", data={"username": email, "password": password})
    assert reply.status_code == 200, reply.text
    http.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"


def test_the_wheel_holds_every_file_of_the_packages(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {name for name in wheel_sources(REPO) if name.startswith(PACKAGES)}
    assert sources - names == set(), "files of the packages missing from the wheel"
    for expected in (
        "orchestrator/migrations/env.py",
        "orchestrator/migrations/script.py.mako",
        "orchestrator/dispatch/lua/claim.lua",
        "orchestrator/web/templates/base.html",
        "orchestrator/web/static/baton.css",
        "orchestrator/notify/templates/experiment.txt",
    ):
        assert expected in names
    assert any(n.startswith("orchestrator/migrations/versions/0001") for n in names)


def test_the_venv_sees_the_install_not_the_checkout(venv: Path, tmp_path: Path) -> None:
    probe = (
        "import json, sys, orchestrator as o, worker as w, baton_client as b, ml; "
        "print(json.dumps([sys.path, [m.__file__ for m in (o, w, b, ml)]]))"
    )
    done = _run(venv, tmp_path, "python", "-c", probe)
    assert done.returncode == 0, done.stderr
    path, files = json.loads(done.stdout)
    assert all(f.startswith(str(venv)) for f in files), files
    assert not any(str(REPO) in entry for entry in path), path
    (direct_url,) = (venv / "lib").glob("python3*/site-packages/baton-*.dist-info/direct_url.json")
    assert not json.loads(direct_url.read_text()).get("dir_info", {}).get("editable")


def test_db_upgrade_migrates_a_fresh_sqlite_data_dir(venv: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = _run(venv, tmp_path, "baton", "db", "upgrade", BATON_DATA_DIR=str(data))
    assert done.returncode == 0, done.stderr
    assert "latest schema" in done.stderr
    heads = {
        p.name.split("_", 1)[0] for p in (REPO / "orchestrator/migrations/versions").glob("0*.py")
    }
    with contextlib.closing(sqlite3.connect(data / "baton.db")) as db:
        (version,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert version == max(heads)
    assert {"experiment", "attempt", "worker"} <= tables


def test_serve_answers_and_hands_out_the_public_url(
    venv: Path, tmp_path: Path, redis_url: str
) -> None:
    port = free_port()
    env = {
        "BATON_ENV": "test",
        "BATON_SECRET_KEY": SECRET,
        "BATON_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": redis_url,
    }
    email, password = "owner@example.com", "password123"
    made = _run(
        venv, tmp_path, "baton", "users", "create", "--email", email, "--password", password, **env
    )
    assert made.returncode == 0, made.stderr
    args = ("serve", "--host", "127.0.0.1", "--port", str(port), "--public-url", PUBLIC_URL)
    with _started(venv, tmp_path, *args, **env) as api:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(api, url)
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.get("/ui/login").status_code == 200  # templates ship
            assert "body" in http.get("/ui/static/baton.css").text  # static files ship
            served = http.get(f"/api/v1/bootstrap/wheel/{wheel_name()}")
            assert served.status_code == 200
            assert (
                "worker/agent.py"
                in zipfile.ZipFile(_bytes_file(tmp_path, served.content)).namelist()
            )
            _login(http, email, password)
            cell = http.get("/api/v1/bootstrap/kaggle")
            assert cell.status_code == 200, cell.text
            assert f"{PUBLIC_URL}/api/v1/bootstrap/wheel/{wheel_name()}" in cell.json()["cell"]


def _bytes_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "served.whl"
    path.write_bytes(data)
    return path


def test_up_starts_the_whole_system_and_runs_a_job(venv: Path, tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    # Another loopback address than the default: --host is where it listens, nowhere else.
    args = ("up", "--host", "127.0.0.2", "--port", str(port), "--workers", "1")
    with _started(
        venv, tmp_path, *args, "--public-url", PUBLIC_URL, BATON_DATA_DIR=str(data)
    ) as up:
        url = f"http://127.0.0.2:{port}"
        _wait_healthy(up, url)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        wait_until(lambda: "admin:" in up.output(), timeout=30, what="baton up's banner")
        assert f"Baton is up at {PUBLIC_URL}" in up.output()
        with httpx.Client(base_url=url, timeout=30) as http:
            _login(http, "admin@baton.local", (data / "admin-password").read_text().strip())
            experiment = {
                "name": "c",
                "kind": "demo.counter",
                "config": {"steps": 3, "step_seconds": 0.05},
            }
            created = http.post("/api/v1/experiments", json=experiment)
            assert created.status_code == 201, created.text

            def finished() -> dict[str, object] | None:
                body: dict[str, object] = http.get(
                    f"/api/v1/experiments/{created.json()['id']}"
                ).json()
                return body if body["status"] in ("succeeded", "failed", "lost") else None

            body = wait_until(finished, timeout=90, what="the job to finish")
            assert body["status"] == "succeeded", (body, up.output()[-3000:])
            (worker,) = http.get("/api/v1/workers").json()
            assert worker["platform"] == "local"
        (agent,) = [pid for pid in _children(up.popen.pid) if "worker" in _cmdline(pid)]
        assert "--platform local" in " ".join(_cmdline(agent))
        environ = Path(f"/proc/{agent}/environ").read_bytes().split(b"\0")
        assert b"AWS_EC2_METADATA_DISABLED=true" in environ, "no EC2 metadata probe"
        up.signal(signal.SIGTERM)
        assert up.popen.wait(60) == 0, up.output()[-3000:]


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
