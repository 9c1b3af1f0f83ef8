"""Real processes, checkpoints in the emulator bucket, workers holding no key: signed URLs."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import storage
from sqlmodel import Session

from orchestrator.db import make_engine
from orchestrator.models import Experiment
from tests.e2e.conftest import Baton
from tests.storage.test_gcs_store import make_checkpoint, tree
from tests.support.stack import wait_until
from worker.checkpoints import CheckpointError, CheckpointRef, open_store
from worker.checkpoints.signed import SignedUrlCheckpointStore, open_attempt_store
from worker.client import WorkerClient
from worker.jobs.counter import expected_digest

pytestmark = pytest.mark.e2e

CHUNK = 256 * 1024  # so the 700 kB file goes up as a resumable session, in three chunks
STEPS = 40
COUNTER = {
    "name": "counter",
    "kind": "demo.counter",
    "config": {"steps": STEPS, "step_seconds": 0.25, "checkpoint_every": 5},
}
KEEP = 2


@pytest.fixture
def keyless_env(tmp_path: Path) -> Callable[[Baton], dict[str, str]]:
    """A worker environment with no bucket access at all: no key, no emulator address, and
    Google's libraries made unimportable, as in a notebook that never installed them."""
    blocker = tmp_path / "no-google" / "google"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(
        "raise ImportError('a worker must not need google libraries')\n"
    )

    def env(baton: Baton) -> dict[str, str]:
        hidden = ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "BATON_CHECKPOINT_URL")
        clean = {k: v for k, v in baton.stack.env.items() if k not in hidden}
        clean["PYTHONPATH"] = str(blocker.parent)
        return clean

    return env


@pytest.fixture
def worker_client() -> Iterator[Callable[[Baton], WorkerClient]]:
    clients: list[WorkerClient] = []

    def make(baton: Baton) -> WorkerClient:
        client = WorkerClient(baton.stack.url, baton.worker_token)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _claim(client: WorkerClient) -> dict[str, Any]:
    never = threading.Event()
    worker_id = int(client.register({"name": "probe"}, stop=never)["id"])
    grant = client.claim(worker_id, wait=5, stop=never)
    assert grant is not None
    return grant


def test_signed_urls_round_trip_for_the_open_lease_only(
    baton_factory: Callable[..., Baton],
    gcs_env: dict[str, str],
    gcs_bucket: storage.Bucket,
    worker_client: Callable[[Baton], WorkerClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    baton = baton_factory(**gcs_env, BATON_CHECKPOINT_CHUNK_BYTES=str(CHUNK))
    client = worker_client(baton)
    experiment_id = baton.submit(**COUNTER)
    other_id = baton.submit(**{**COUNTER, "name": "other"})
    grant = _claim(client)
    assert grant["experiment_id"] == experiment_id
    assert grant["checkpoint_url"] == f"baton-signed:{gcs_env['BATON_CHECKPOINT_URL']}"
    store = open_attempt_store(
        grant["checkpoint_url"], client=client, lease_token=grant["lease_token"]
    )
    assert isinstance(store, SignedUrlCheckpointStore)

    # No empty file: the emulator fails an empty XML-API PUT (real GCS takes it).
    source = make_checkpoint(tmp_path / "src", seed=1, empty=False)
    with caplog.at_level(logging.INFO, logger="gcp_storage_emulator"):
        ref = store.upload(experiment_id=str(experiment_id), attempt=1, step=10, source=source)
    puts = [r.getMessage() for r in caplog.records if '"PUT ' in r.getMessage()]
    assert sum("upload_id=" in line for line in puts) == 3, puts  # the resumable file's chunks
    assert "MANIFEST.json" in puts[-1], "the manifest goes up last"

    # The control plane's own view of the bucket: the objects are where they belong.
    bucket_view = open_store(gcs_env["BATON_CHECKPOINT_URL"])
    assert bucket_view.list(experiment_id=str(experiment_id)) == [ref]
    assert tree(bucket_view.download(ref, tmp_path / "direct")) == tree(source)
    # And through signed URLs only, into a fresh directory.
    assert store.list(experiment_id=str(experiment_id)) == [ref]
    assert store.size_bytes(ref) == sum(len(b) for b in tree(source).values())
    assert tree(store.download(ref, tmp_path / "signed")) == tree(source)

    with pytest.raises(CheckpointError, match="403"):  # not this lease's experiment
        store.download(
            CheckpointRef(step=10, attempt=1, experiment_id=str(other_id)), tmp_path / "x"
        )
    with pytest.raises(CheckpointError, match="retention"):
        store.delete(ref)

    # Once the lease is given back, its token gets no more URLs.
    client.finish("release", {"lease_token": grant["lease_token"]}, give_up=threading.Event())
    with pytest.raises(CheckpointError, match="409"):
        store.upload(experiment_id=str(experiment_id), attempt=1, step=20, source=source)
    with pytest.raises(CheckpointError, match="409"):
        store.download(ref, tmp_path / "late")


def test_killed_worker_resumes_from_the_bucket_and_retention_keeps_the_resume_point(
    baton_factory: Callable[..., Baton],
    gcs_env: dict[str, str],
    keyless_env: Callable[[Baton], dict[str, str]],
) -> None:
    baton = baton_factory(**gcs_env, BATON_CHECKPOINT_KEEP=str(KEEP), BATON_RETENTION_SECONDS="2")
    store = open_store(gcs_env["BATON_CHECKPOINT_URL"])
    experiment_id = baton.submit(**COUNTER)
    worker_a = baton.start_worker("worker-a", env=keyless_env(baton))

    def checkpointed() -> bool:
        attempts = baton.get(experiment_id)["attempts"]
        return bool(attempts) and (attempts[0]["last_checkpoint_step"] or 0) >= 15

    wait_until(checkpointed, timeout=60, what="attempt 1 to report a checkpoint at step >= 15")
    worker_a.signal(signal.SIGKILL)  # the notebook session dies
    worker_a.popen.wait(10)
    with Session(make_engine(baton.settings.resolved_database_url)) as session:
        experiment = session.get(Experiment, experiment_id)
        assert experiment is not None and experiment.checkpoint_key is not None
        resume_key = experiment.checkpoint_key
    worker_b = baton.start_worker("worker-b", env=keyless_env(baton))

    # While attempt 2 runs, retention (after each checkpoint, and every 2 s) never deletes
    # the checkpoint it resumed from, and the experiment keeps at most KEEP others.
    def finished() -> dict[str, Any] | None:
        keys = {r.key for r in store.list(experiment_id=str(experiment_id))}
        body = baton.get(experiment_id)
        if body["status"] == "running" and len(body["attempts"]) == 2:
            assert resume_key in keys, f"the resume point {resume_key} was deleted: {keys}"
            assert len(keys - {resume_key}) <= KEEP + 1, keys  # + 1: uploaded, not yet pruned
        return body if body["status"] in ("succeeded", "failed", "lost") else None

    body = wait_until(finished, timeout=90, interval=0.2, what="the experiment to finish")
    assert body["status"] == "succeeded", body
    first, second = body["attempts"]
    assert first["outcome"] == "lost" and second["outcome"] == "succeeded"
    assert second["resumed_from_step"] == first["last_checkpoint_step"] >= 15
    assert body["result"]["digest"] == expected_digest(STEPS)
    assert body["result"]["history"][1] == {"attempt": 2, "start_step": second["resumed_from_step"]}

    # Afterwards the scheduled retention leaves the newest KEEP, the final one among them.
    final = CheckpointRef(step=35, attempt=2, experiment_id=str(experiment_id))
    newest = {final.key, CheckpointRef(step=30, attempt=2, experiment_id=str(experiment_id)).key}
    wait_until(
        lambda: {r.key for r in store.list(experiment_id=str(experiment_id))} == newest,
        timeout=20,
        what="retention to prune to the newest checkpoints",
    )
    worker_b.stop()
    for proc in (worker_a, worker_b):
        assert "Traceback" not in proc.output(), proc.output()[-3000:]
