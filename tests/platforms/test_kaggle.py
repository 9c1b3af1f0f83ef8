"""Kaggle rotation, driving the real `kaggle` client against a local stand-in of the Kaggle API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import Session, col, select

from orchestrator.background import platforms
from orchestrator.models import Enrollment, KaggleLaunch, PlatformQuota
from orchestrator.models.types import utcnow
from orchestrator.platforms import rotation
from orchestrator.runtime import Runtime
from orchestrator.services import enrollment
from orchestrator.settings import Settings
from tests.e2e.conftest import Baton
from tests.platforms import standins
from tests.platforms.test_bootstrap import _fresh_python
from tests.support.api import create_user, create_worker_token, login
from tests.support.enrollment import code_in, exchange
from tests.support.experiments import submit
from tests.support.rq import run_jobs, task_runtime
from tests.support.workers import bearer, claim, register

GPU = {"resources": {"gpu": True}}
SLUG = "alice/baton-worker"
# Kaggle's own module, as a kernel has it; nothing can attach a secret to a pushed kernel.
KAGGLE_SECRETS = """\
class UserSecretsClient:
    def get_secret(self, name):
        raise KeyError(f"no secret {name} is attached to this kernel")
"""


@pytest.fixture
def kaggle_api() -> Iterator[tuple[standins.Kaggle, str]]:
    api = standins.Kaggle(username="alice", key="kaggle-key")
    with standins.serve(api) as url:
        yield api, url


@pytest.fixture
def kaggle_settings(settings: Settings, kaggle_api: tuple[standins.Kaggle, str]) -> Settings:
    return settings.model_copy(
        update={
            "kaggle_username": "alice",
            "kaggle_key": SecretStr("kaggle-key"),
            "kaggle_api_endpoint": kaggle_api[1],
            "kaggle_retry_seconds": 1,
            "public_url": "https://baton.example",
        }
    )


@pytest.fixture
def runtime(kaggle_settings: Settings, client: TestClient) -> Iterator[Runtime]:
    rt = Runtime.from_settings(kaggle_settings)
    yield rt
    rt.close()


@pytest.fixture
def user(client: TestClient, settings: Settings) -> dict[str, str]:
    # Launched kernels' tokens belong to the first admin: they take the admin's work.
    create_user(settings, "u@example.com", admin=True)
    return login(client, "u@example.com")


def launches(runtime: Runtime) -> list[KaggleLaunch]:
    with Session(runtime.engine) as session:
        return list(session.exec(select(KaggleLaunch).order_by(col(KaggleLaunch.id))).all())


def test_launches_one_kernel_for_queued_gpu_work_and_follows_it(
    runtime: Runtime,
    client: TestClient,
    user: dict[str, str],
    kaggle_api: tuple[standins.Kaggle, str],
) -> None:
    api, _ = kaggle_api
    experiment_id = submit(client, user, "train", **GPU)

    assert rotation.tick(runtime).decision == "launched"
    (push,) = api.pushes
    assert push["slug"] == SLUG and push["newTitle"] == "baton-worker"
    assert push["enableGpu"] is True and push["enableInternet"] is True
    assert push["kernelType"] == "script" and push["isPrivate"] is True
    # The session ends at the 9 h limit (27 h of quota remain); the worker is told the same.
    assert push["sessionTimeoutSeconds"] == 9 * 3600
    assert "'--session-hours', '9'" in push["text"]
    assert "kaggle-key" not in push["text"]
    assert "https://baton.example/api/v1/bootstrap/wheel/" in push["text"]
    # No token read from Kaggle Secrets (nothing can attach one to a pushed kernel): the
    # kernel carries the launch's single-use enrollment code.
    assert "BATON_WORKER_TOKEN" not in push["text"] and "bwt_" not in push["text"]
    code = code_in(push["text"])
    assert f"'--enroll', '{code}'" in push["text"]
    (row,) = launches(runtime)
    assert (row.status, row.experiment_ids, row.version_number) == ("queued", [experiment_id], 1)
    with Session(runtime.engine) as session:
        (enrolled,) = session.exec(select(Enrollment)).all()
    assert enrolled.launch_id == row.id and enrolled.code_hash != code
    assert enrolled.expires_at <= utcnow() + timedelta(hours=1)

    # The kernel's agent exchanges the code once and works with the token it got.
    token = exchange(client, code)
    register(client, token)
    again = client.post("/api/v1/workers/enroll", json={"code": code})
    assert again.status_code == 410 and "already used" in again.json()["detail"]

    # In flight: never a second kernel for the same need, whatever the kernel is doing.
    assert rotation.tick(runtime).decision == "in-flight"
    api.statuses[SLUG] = "RUNNING"
    tick = rotation.tick(runtime)
    assert tick.decision == "in-flight" and tick.followed == {row.id: "running"}
    assert len(api.pushes) == 1

    # The kernel ended (its session was over) while work still waits: the next one goes.
    api.statuses[SLUG] = "COMPLETE"
    tick = rotation.tick(runtime)
    assert tick.followed == {row.id: "complete"} and tick.decision == "launched"
    first, second = launches(runtime)
    assert first.status == "complete" and first.finished_at is not None
    assert second.status == "queued" and len(api.pushes) == 2
    # The first kernel is gone, and so is its token; the second carries a code of its own.
    refused = client.post("/api/v1/workers/register", json={"name": "w"}, headers=bearer(token))
    assert refused.status_code == 401
    assert code_in(api.pushes[1]["text"]) != code


def test_no_launch_while_the_public_url_is_loopback(
    kaggle_settings: Settings,
    client: TestClient,
    user: dict[str, str],
    kaggle_api: tuple[standins.Kaggle, str],
) -> None:
    """A kernel told to call 127.0.0.1 would only burn quota: the rotation waits for a URL."""
    api, _ = kaggle_api
    submit(client, user, "train", **GPU)
    local = kaggle_settings.model_copy(update={"public_url": "http://127.0.0.1:8000"})
    runtime = Runtime.from_settings(local)
    try:
        assert rotation.tick(runtime).decision == "no-public-url"
        assert api.pushes == [] and launches(runtime) == []
    finally:
        runtime.close()


def test_quota_exhausted_means_no_launch(
    runtime: Runtime,
    client: TestClient,
    user: dict[str, str],
    kaggle_api: tuple[standins.Kaggle, str],
) -> None:
    api, _ = kaggle_api
    api.used_seconds = api.allowed_seconds - 1800  # half an hour left, under the 1 h minimum
    submit(client, user, "train", **GPU)
    assert rotation.tick(runtime).decision == "quota-exhausted"
    assert api.pushes == [] and launches(runtime) == []
    with Session(runtime.engine) as session:
        quota = session.get(PlatformQuota, ("kaggle", "alice"))
    assert quota is not None and quota.allowed_seconds == 30 * 3600 and quota.error is None
    # The usage report shows Kaggle's own figures for the account.
    report = client.get("/api/v1/platforms/usage", headers=user).json()
    (kaggle,) = [p for p in report["platforms"] if p["platform"] == "kaggle"]
    assert kaggle["source"] == "kaggle" and kaggle["account"] == "alice"
    assert kaggle["gpu_hours_used"] == 29.5 and kaggle["gpu_hours_allowed"] == 30
    assert kaggle["resets_at"].startswith("2030-01-05T00:00:00")


def test_failed_launch_is_recorded_and_retried_later_without_duplicates(
    runtime: Runtime,
    client: TestClient,
    user: dict[str, str],
    kaggle_api: tuple[standins.Kaggle, str],
) -> None:
    api, _ = kaggle_api
    api.fail_pushes = 1
    submit(client, user, "train", **GPU)

    assert rotation.tick(runtime).decision == "launch-failed"
    (failed,) = launches(runtime)
    assert failed.status == "failed" and failed.finished_at is not None
    assert "Internal error" in (failed.error or "")
    assert rotation.tick(runtime).decision == "backing-off"  # within the 1 s back-off
    assert api.pushes == []
    # The refused kernel's code went over the wire; with its launch failed, it buys nothing.
    (refused,) = api.refused
    reply = client.post("/api/v1/workers/enroll", json={"code": code_in(refused["text"])})
    assert reply.status_code == 410 and "expired" in reply.json()["detail"]

    time.sleep(1.1)
    assert rotation.tick(runtime).decision == "launched"
    assert rotation.tick(runtime).decision == "in-flight"
    assert len(api.pushes) == 1
    assert [r.status for r in launches(runtime)] == ["failed", "queued"]


def test_a_kernel_that_errors_is_recorded_and_backs_off(
    runtime: Runtime,
    client: TestClient,
    user: dict[str, str],
    kaggle_api: tuple[standins.Kaggle, str],
) -> None:
    api, _ = kaggle_api
    submit(client, user, "train", **GPU)
    assert rotation.tick(runtime).decision == "launched"
    api.statuses[SLUG] = "ERROR"
    tick = rotation.tick(runtime)
    assert list(tick.followed.values()) == ["error"] and tick.decision == "backing-off"
    assert len(api.pushes) == 1


def test_no_launch_without_matching_work_or_with_a_kaggle_worker_alive(
    runtime: Runtime,
    client: TestClient,
    user: dict[str, str],
    settings: Settings,
    kaggle_api: tuple[standins.Kaggle, str],
) -> None:
    api, _ = kaggle_api
    submit(client, user, "cpu only")
    assert rotation.tick(runtime).decision == "no-work"
    submit(client, user, "needs 40 GB", resources={"gpu": True, "min_gpu_memory_gb": 40})
    assert rotation.tick(runtime).decision == "no-work"
    submit(client, user, "train", **GPU)
    register(client, create_worker_token(settings), platform="kaggle", account="alice", gpu_count=1)
    assert rotation.tick(runtime).decision == "worker-alive"
    assert api.pushes == []


def test_concurrent_ticks_push_once(
    runtime: Runtime,
    client: TestClient,
    user: dict[str, str],
    kaggle_api: tuple[standins.Kaggle, str],
) -> None:
    api, _ = kaggle_api
    submit(client, user, "train", **GPU)
    barrier = threading.Barrier(3)
    decisions: list[str] = []

    def tick() -> None:
        barrier.wait()
        decisions.append(rotation.tick(runtime).decision)

    threads = [threading.Thread(target=tick) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(decisions) == ["in-flight", "in-flight", "launched"]
    assert len(api.pushes) == 1 and len(launches(runtime)) == 1


def test_the_rq_job_runs_the_rotation(
    kaggle_settings: Settings,
    client: TestClient,
    user: dict[str, str],
    kaggle_api: tuple[standins.Kaggle, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api, _ = kaggle_api
    submit(client, user, "train", **GPU)
    with task_runtime(kaggle_settings, monkeypatch) as rt:
        job = rt.queue.enqueue(platforms.rotate_kaggle)
        run_jobs(rt)
        assert job.return_value() == "launched"
    assert len(api.pushes) == 1


def test_dry_run_prints_the_kernel_without_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATON_KAGGLE", "KAGGLE"))}
    env.update({"BATON_PUBLIC_URL": "https://baton.example", "BATON_DATA_DIR": str(tmp_path)})
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "kaggle", "launch", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    metadata_text = done.stdout.split("==> kernel-metadata.json <==\n")[1].split("==> ")[0]
    metadata = json.loads(metadata_text)
    assert metadata["enable_gpu"] is True and metadata["enable_internet"] is True
    assert metadata["code_file"] == "baton_worker.py"
    assert "==> baton_worker.py <==" in done.stdout and "'--enroll', 'bec_" in done.stdout
    assert "BATON_WORKER_TOKEN" not in done.stdout


def test_low_quota_tells_the_admins_once_per_quota_week(
    kaggle_settings: Settings,
    client: TestClient,
    kaggle_api: tuple[standins.Kaggle, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api, _ = kaggle_api
    api.used_seconds = 28 * 3600  # 2 of 30 hours left: under a tenth
    log = kaggle_settings.data_dir / "notifications.log"
    with task_runtime(kaggle_settings, monkeypatch) as rt:
        for _ in range(2):
            assert rotation.tick(rt).decision == "no-work"
            run_jobs(rt)
    notices = [json.loads(line)["quota_low"] for line in log.read_text().splitlines()]
    assert notices == [
        {"platform": "kaggle", "account": "alice", "used": 28 * 3600.0, "allowed": 30 * 3600.0}
    ]


def test_a_launch_whose_pusher_died_is_closed(
    runtime: Runtime,
    client: TestClient,
    user: dict[str, str],
    kaggle_api: tuple[standins.Kaggle, str],
) -> None:
    api, _ = kaggle_api
    submit(client, user, "train", **GPU)
    with Session(runtime.engine) as session:
        stale = utcnow() - timedelta(minutes=10)
        row = KaggleLaunch(
            need_key="kaggle:alice", kernel_slug=SLUG, created_at=stale, updated_at=stale
        )
        session.add(row)
        session.commit()
        launch_id = row.id
    # Recorded but never pushed (Kaggle knows no such kernel): closed, and it counts as a failure.
    tick = rotation.tick(runtime)
    assert tick.followed == {launch_id: "failed"} and tick.decision == "backing-off"
    assert api.pushes == []


@pytest.mark.e2e
def test_a_launched_kernel_enrolls_and_works_with_no_secret_attached(
    baton_factory: Callable[..., Baton], kaggle_api: tuple[standins.Kaggle, str], tmp_path: Path
) -> None:
    api, endpoint = kaggle_api
    baton = baton_factory()
    launch_env = {
        **baton.stack.env,
        "BATON_PUBLIC_URL": baton.stack.url,
        "BATON_KAGGLE_USERNAME": "alice",
        "BATON_KAGGLE_KEY": "kaggle-key",
        "BATON_KAGGLE_API_ENDPOINT": endpoint,
    }
    launched = subprocess.run(
        # The stand-in "Kaggle" runs the kernel on this machine, where loopback does reach.
        [sys.executable, "-m", "orchestrator", "kaggle", "launch", "--allow-loopback"],
        env=launch_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert launched.returncode == 0 and "launched" in launched.stdout, launched.stderr
    (push,) = api.pushes
    kernel = tmp_path / "kernel"
    kernel.mkdir()
    (kernel / "baton_worker.py").write_text(push["text"])
    (kernel / "kaggle_secrets.py").write_text(KAGGLE_SECRETS)
    python = _fresh_python(tmp_path / "venv")
    notebook_env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    notebook_env.update({"HOME": str(tmp_path / "home"), "PYTHONPATH": "", "PYTHONUNBUFFERED": "1"})
    experiment_id = baton.submit(
        name="counter", kind="demo.counter", config={"steps": 5, "step_seconds": 0.05}
    )

    # The kernel runs as Kaggle would run it: installs the worker from the control plane,
    # enrolls with the code it carries, and works.
    log = tmp_path / "kernel.log"
    with log.open("wb") as out:
        run = subprocess.Popen(
            [str(python), "baton_worker.py"], cwd=kernel, env=notebook_env, stdout=out, stderr=out
        )
    try:
        body = baton.wait_status(experiment_id, "succeeded", "failed", timeout=240)
    finally:
        run.send_signal(signal.SIGTERM)
        code = run.wait(60)
    assert body["status"] == "succeeded", log.read_text()[-3000:]
    assert code == 0, log.read_text()[-3000:]

    # Kaggle runs the same version again: the code is spent, the script fails, the kernel errors.
    again = subprocess.run(
        [str(python), "baton_worker.py"],
        cwd=kernel,
        env=notebook_env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert again.returncode == 2 and "already used" in again.stderr, again.stderr[-3000:]


def test_launched_kernels_take_a_pools_work_only_when_configured(
    kaggle_settings: Settings,
    client: TestClient,
    settings: Settings,
    kaggle_api: tuple[standins.Kaggle, str],
) -> None:
    api, _ = kaggle_api
    create_user(settings, "admin@example.com", admin=True)
    admin = login(client, "admin@example.com")
    bob_id = create_user(settings, "bob@example.com")
    bob = login(client, "bob@example.com")
    bobs = submit(client, bob, "bob's training", **GPU)
    client.put("/api/v1/secrets/HF_TOKEN", json={"value": "bob-hf"}, headers=bob)
    submit(client, bob, "bob's private training", secrets=["HF_TOKEN"], **GPU)
    plain = Runtime.from_settings(kaggle_settings)
    try:
        assert rotation.tick(plain).decision == "no-work", "Bob's work is not the admin's"
    finally:
        plain.close()

    pool = client.post("/api/v1/pools", json={"name": "lab"}, headers=admin).json()
    client.put(f"/api/v1/pools/{pool['id']}/users/{bob_id}", headers=admin)
    pooled = Runtime.from_settings(kaggle_settings.model_copy(update={"kaggle_pool": "lab"}))
    try:
        tick = rotation.tick(pooled)
        assert tick.decision == "launched"
        (row,) = launches(pooled)
        assert row.experiment_ids == [bobs], "only the work naming no secrets"
        with Session(pooled.engine) as session:
            enrolled = enrollment.exchange(
                session, code_in(api.pushes[0]["text"]), launch_pool="lab"
            )
            session.commit()
    finally:
        pooled.close()
    members = client.get(f"/api/v1/pools/{pool['id']}", headers=admin).json()
    assert len(members["token_ids"]) == 1, "the launched kernel's token joined the pool"
    worker = register(client, enrolled.token, platform="kaggle", gpu_count=1, gpu_memory_mb=16384)
    grant = claim(client, enrolled.token, worker)
    assert grant is not None and grant["experiment_id"] == bobs
    assert claim(client, enrolled.token, worker) is None
