"""Retention against the emulator bucket, driven through the real worker API and RQ jobs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from google.cloud import storage

from orchestrator.app import create_app
from orchestrator.background import tasks
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from tests.support.api import create_user, create_worker_token, login, make_settings
from tests.support.experiments import submit
from tests.support.rq import run_jobs, task_runtime
from tests.support.workers import claim, finish, register

CHECKPOINT_BYTES = 100_000
KEEP = 3
SMALL_BUDGET = 350_000  # room for the three protected checkpoints, not for a fourth
KeptRule = Callable[[list[str], str], set[str]]


class Worker:
    """A worker acting through the API, uploading straight to the bucket."""

    def __init__(self, client: TestClient, token: str, runtime: Runtime, tmp: Path) -> None:
        self.client, self.token, self.runtime, self.tmp = client, token, runtime, tmp
        self.worker_id = register(client, token)

    def claim(self) -> dict[str, Any]:
        grant = claim(self.client, self.token, self.worker_id)
        assert grant is not None
        return grant

    def checkpoint(self, grant: dict[str, Any], step: int) -> str:
        source = self.tmp / f"{grant['experiment_id']}-{grant['attempt']}-{step}"
        source.mkdir()
        (source / "weights.bin").write_bytes(os.urandom(CHECKPOINT_BYTES))
        ref = self.runtime.checkpoints.upload(
            experiment_id=str(grant["experiment_id"]),
            attempt=grant["attempt"],
            step=step,
            source=source,
        )
        finish(
            self.client, self.token, "heartbeat", grant, checkpoint={"key": ref.key, "step": step}
        )
        return ref.key


def tight(keys: list[str], resume: str) -> set[str]:
    """Under a tight budget only the protected stay: the resume point and the newest. After
    attempt 2 the resume point is unprotected, yet it still fits KEEP and the budget."""
    return {keys[-1], resume}


def play(
    settings: Settings,
    *,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    stored_bytes: Callable[[], int],
    steps: range,
    kept_running: KeptRule,
    kept_after: KeptRule,
) -> None:
    """A finished experiment, then one resumed by attempt 2 that checkpoints at ``steps``;
    retention runs (as the RQ job each new checkpoint enqueues) after every checkpoint."""
    budget = settings.checkpoint_budget_bytes
    create_user(settings, "u@example.com")
    token = create_worker_token(settings)
    with TestClient(create_app(settings)) as client, task_runtime(settings, monkeypatch) as rt:
        user = login(client, "u@example.com")
        worker = Worker(client, token, rt, tmp_path)

        def stored(experiment_id: int) -> set[str]:
            return {r.key for r in rt.checkpoints.list(experiment_id=str(experiment_id))}

        # A finished experiment: its final checkpoint stays whatever the pressure.
        earlier_id = submit(client, user, "finished-earlier")
        grant = worker.claim()
        worker.checkpoint(grant, 1)
        final_earlier = worker.checkpoint(grant, 2)
        finish(client, token, "complete", grant)
        run_jobs(rt)

        # Attempt 1 checkpoints once and is preempted; attempt 2 resumes from that checkpoint.
        experiment_id = submit(client, user, "long-run")
        first = worker.claim()
        resume_key = worker.checkpoint(first, 5)
        finish(client, token, "release", first, reason="preempted")
        second = worker.claim()
        assert second["resume"] == {"key": resume_key, "step": 5}

        keys: list[str] = []
        for step in steps:
            keys.append(worker.checkpoint(second, step))
            run_jobs(rt)  # the retention job the new checkpoint asked for
            assert stored(experiment_id) == kept_running(keys, resume_key), f"after step {step}"
            assert final_earlier in stored(earlier_id)
            assert stored_bytes() <= budget

        # Once attempt 2 is over, its resume point is no longer protected; finals always are.
        finish(client, token, "complete", second)
        rt.queue.enqueue(tasks.apply_retention)  # what the cron schedule does
        run_jobs(rt)
        assert stored(experiment_id) == kept_after(keys, resume_key)
        assert final_earlier in stored(earlier_id)
        assert stored_bytes() <= budget


@pytest.mark.parametrize(
    ("budget", "kept_running", "kept_after"),
    [
        # Plenty of room: the newest KEEP, plus the resume point while attempt 2 runs.
        (
            10_000_000,
            lambda keys, resume: {*keys[-KEEP:], resume},
            lambda keys, resume: set(keys[-KEEP:]),
        ),
        # A tight budget: only what is protected (the resume point and the newest).
        (SMALL_BUDGET, tight, tight),
    ],
    ids=["keep-newest", "tight-budget"],
)
def test_bucket_budget_held_across_20_checkpoints_and_the_resume_point_kept(
    database_url: str,
    redis_url: str,
    gcs_env: dict[str, str],
    gcs_bucket: storage.Bucket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    budget: int,
    kept_running: KeptRule,
    kept_after: KeptRule,
) -> None:
    settings = make_settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        BATON_CHECKPOINT_BUDGET_BYTES=budget,
        BATON_CHECKPOINT_KEEP=KEEP,
    )
    assert settings.resolved_checkpoint_url == gcs_env["BATON_CHECKPOINT_URL"]
    play(
        settings,
        monkeypatch=monkeypatch,
        tmp_path=tmp_path,
        stored_bytes=lambda: sum(
            int(b.size or 0) for b in gcs_bucket.client.list_blobs(gcs_bucket)
        ),
        steps=range(10, 110, 5),  # 20 checkpoints
        kept_running=kept_running,
        kept_after=kept_after,
    )


def test_local_store_follows_the_same_rules(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "checkpoints"
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'baton.db'}",
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        BATON_CHECKPOINT_URL=root.as_uri(),
        BATON_CHECKPOINT_BUDGET_BYTES=SMALL_BUDGET,
        BATON_CHECKPOINT_KEEP=KEEP,
    )
    play(
        settings,
        monkeypatch=monkeypatch,
        tmp_path=tmp_path,
        stored_bytes=lambda: sum(p.stat().st_size for p in root.rglob("*") if p.is_file()),
        steps=range(10, 40, 5),
        kept_running=tight,
        kept_after=tight,
    )
