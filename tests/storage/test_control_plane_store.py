"""No bucket configured: the control plane is the checkpoint store. Real `baton serve`, real
worker processes and the worker's own SignedUrlCheckpointStore; no file:// for workers."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.storage.signing import StoreUrls
from tests.e2e.conftest import Baton
from tests.storage.test_gcs_store import make_checkpoint, tree
from tests.storage.test_signed_resumable import LosesOneReply
from tests.support.stack import SECRET, wait_until
from worker.checkpoints import CheckpointError, CheckpointRef, open_store
from worker.checkpoints.base import MANIFEST, build_manifest
from worker.checkpoints.signed import SignedUrlCheckpointStore, _put_resumable, open_attempt_store
from worker.client import WorkerClient
from worker.jobs.counter import expected_digest

pytestmark = pytest.mark.e2e

STEPS = 40
COUNTER = {
    "name": "counter",
    "kind": "demo.counter",
    "config": {"steps": STEPS, "step_seconds": 0.25, "checkpoint_every": 5},
}
SMALL_CHUNK = 256 * 1024
BLOCK_LOCAL_STORE = """\
import sys


class _NoLocalStore:
    def find_spec(self, name, path=None, target=None):
        if name == "worker.checkpoints.local":
            raise ImportError("a worker on another host cannot write the control plane's disk")
        return None


sys.meta_path.insert(0, _NoLocalStore())
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def remote_env(tmp_path: Path) -> Callable[[Baton], dict[str, str]]:
    """A worker that knows nothing of the control plane's disk: no data dir or checkpoint URL
    in its environment, and the local file store cannot even be imported."""
    site = tmp_path / "remote-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_LOCAL_STORE)

    def env(baton: Baton) -> dict[str, str]:
        hidden = ("BATON_DATA_DIR", "BATON_CHECKPOINT_URL", "DATABASE_URL", "REDIS_URL")
        clean = {k: v for k, v in baton.stack.env.items() if k not in hidden}
        clean["PYTHONPATH"] = os.pathsep.join([str(site), clean.get("PYTHONPATH", "")])
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


def _lease(baton: Baton, client: WorkerClient) -> tuple[dict[str, Any], SignedUrlCheckpointStore]:
    never = threading.Event()
    worker_id = int(client.register({"name": "probe"}, stop=never)["id"])
    experiment_id = baton.submit(**COUNTER)
    grant = client.claim(worker_id, wait=5, stop=never)
    assert grant is not None and grant["experiment_id"] == experiment_id
    store = open_attempt_store(
        grant["checkpoint_url"], client=client, lease_token=grant["lease_token"]
    )
    assert isinstance(store, SignedUrlCheckpointStore)
    return grant, store


def _plan(
    client: WorkerClient, grant: dict[str, Any], step: int, files: list[dict[str, Any]]
) -> dict[str, Any]:
    plan: dict[str, Any] = client.request(
        "POST",
        "/api/v1/leases/checkpoint-urls",
        json={"lease_token": grant["lease_token"], "step": step, "files": files},
        retry=False,
    ).json()
    return plan


def _access_log(baton: Baton, pattern: str) -> list[str]:
    assert baton.stack.api is not None
    return [line for line in baton.stack.api.output().splitlines() if re.search(pattern, line)]


def test_killed_remote_worker_resumes_through_the_control_plane(
    baton_factory: Callable[..., Baton], remote_env: Callable[[Baton], dict[str, str]]
) -> None:
    baton = baton_factory()
    assert baton.settings.worker_checkpoint_url == "baton-signed:control-plane"
    experiment_id = baton.submit(**COUNTER)
    worker_a = baton.start_worker("worker-a", env=remote_env(baton))

    def checkpointed() -> bool:
        attempts = baton.get(experiment_id)["attempts"]
        return bool(attempts) and (attempts[0]["last_checkpoint_step"] or 0) >= 10

    wait_until(checkpointed, timeout=60, what="attempt 1 to report a checkpoint at step >= 10")
    worker_a.signal(signal.SIGKILL)
    worker_a.popen.wait(10)
    worker_b = baton.start_worker("worker-b", env=remote_env(baton))
    body = baton.wait_status(experiment_id, "succeeded", "failed", "lost", timeout=90)
    assert body["status"] == "succeeded", body
    first, second = body["attempts"]
    assert first["outcome"] == "lost" and second["outcome"] == "succeeded"
    resumed = second["resumed_from_step"]
    assert resumed == first["last_checkpoint_step"] >= 10
    assert body["result"]["digest"] == expected_digest(STEPS)

    # The bytes went through the API: PUTs from A, B's GET of the resume point, and they sit
    # in the control plane's data dir, in the file:// layout its retention reads.
    resume = CheckpointRef(step=resumed, attempt=1, experiment_id=str(experiment_id))
    store_path = "/api/v1/store/checkpoints/"
    assert _access_log(baton, rf'"PUT {store_path}{resume.key}/{MANIFEST}\?.*" 201')
    assert _access_log(baton, rf'"GET {store_path}{resume.key}/state.json\?.*" 200')
    local = open_store((baton.settings.data_dir / "checkpoints").as_uri())
    assert resume in local.list(experiment_id=str(experiment_id))
    worker_b.stop()
    for proc in (worker_a, worker_b):
        assert "Traceback" not in proc.output(), proc.output()[-3000:]


def test_signatures_bind_method_object_and_expiry(
    baton_factory: Callable[..., Baton], worker_client: Callable[[Baton], WorkerClient]
) -> None:
    baton = baton_factory()
    client = worker_client(baton)
    grant, _ = _lease(baton, client)
    assert grant["checkpoint_url"] == "baton-signed:control-plane"
    data = b"weights" * 100
    plan = _plan(client, grant, 5, [{"path": "w.bin", "size": len(data), "sha256": sha(data)}])
    url = plan["files"][0]["url"]
    assert url.startswith(f"{baton.stack.url}/api/v1/store/checkpoints/"), url
    http = httpx.Client(timeout=10)  # no worker token: the signature is the credential

    def tampered(**change: str) -> str:
        parsed = httpx.URL(url)
        params = dict(parsed.params)
        params.update(change)
        return str(parsed.copy_with(params=params))

    for bad in (
        tampered(sig="0" * 64),
        tampered(size=str(len(data) + 1)),
        tampered(sha256=sha(b"other")),
        tampered(expires=str(int(httpx.URL(url).params["expires"]) + 3600)),
        url.replace("w.bin", "x.bin"),
        url.split("&sig=")[0],
    ):
        reply = http.put(bad, content=data)
        assert reply.status_code == 403, (bad, reply.text)
    assert http.get(url).status_code == 403  # a PUT URL does not read
    # Signed with the real key but already expired.
    path = f"{plan['key']}/w.bin"
    expired = StoreUrls(SECRET, seconds=-5).sign("PUT", "checkpoints", path, size=len(data))
    reply = http.put(baton.stack.url + expired, content=data)
    assert reply.status_code == 403 and "expired" in reply.text
    assert http.put(url, content=data).status_code == 201
    http.close()


def test_paths_stay_inside_the_store(
    baton_factory: Callable[..., Baton], worker_client: Callable[[Baton], WorkerClient]
) -> None:
    public = "https://baton.example.test"
    baton = baton_factory(BATON_PUBLIC_URL=public)
    client = worker_client(baton)
    grant, _ = _lease(baton, client)
    # URLs handed out are under the public URL, not the address the worker came in on.
    plan = _plan(client, grant, 1, [{"path": "x", "size": 1, "sha256": sha(b"x")}])
    assert plan["files"][0]["url"].startswith(f"{public}/api/v1/store/checkpoints/"), plan
    # The plan refuses what would leave the checkpoint (or replace its manifest).
    for path in ("../escape", "/etc/passwd", "a\\..\\b", "a//b", MANIFEST):
        reply = client._http.post(
            "/api/v1/leases/checkpoint-urls",
            json={
                "lease_token": grant["lease_token"],
                "step": 1,
                "files": [{"path": path, "size": 1, "sha256": sha(b"x")}],
            },
        )
        assert reply.status_code == 422, (path, reply.text)
    # Even a validly signed URL for a key outside the root gets nowhere.
    urls = StoreUrls(SECRET, seconds=60)
    for key in ("../secret_key", "/etc/passwd", "a\\..\\..\\x", ".staging/x"):
        signed = urls.sign("GET", "checkpoints", key)
        # Keep the dots encoded: a client would otherwise resolve them before sending.
        signed = signed.replace("/checkpoints/../", "/checkpoints/%2E%2E/")
        reply = httpx.get(baton.stack.url + signed)
        assert reply.status_code == 400 and "inside the store" in reply.text, (key, reply.text)
        put = urls.sign("PUT", "checkpoints", key, size=1, sha256=sha(b"x"))
        put = put.replace("/checkpoints/../", "/checkpoints/%2E%2E/")
        reply = httpx.put(baton.stack.url + put, content=b"x")
        assert reply.status_code == 400 and "inside the store" in reply.text, (key, reply.text)
    # A file URL may not write a checkpoint's manifest.
    manifest_key = f"{grant['experiment_id']}/0001-000000000001/{MANIFEST}"
    put = urls.sign("PUT", "checkpoints", manifest_key, size=2, sha256=sha(b"{}"))
    reply = httpx.put(baton.stack.url + put, content=b"{}")
    assert reply.status_code == 400, reply.text
    assert httpx.get(baton.stack.url + urls.sign("GET", "nowhere", "x")).status_code == 404


def test_corrupt_uploads_never_become_checkpoints(
    baton_factory: Callable[..., Baton],
    worker_client: Callable[[Baton], WorkerClient],
    tmp_path: Path,
) -> None:
    baton = baton_factory(BATON_CHECKPOINT_CHUNK_BYTES=str(SMALL_CHUNK))
    client = worker_client(baton)
    grant, store = _lease(baton, client)
    experiment = str(grant["experiment_id"])
    good = os.urandom(3 * SMALL_CHUNK + 1000)  # above a chunk: the resumable path
    small = b'{"step": 7}'
    source = tmp_path / "src"
    (source / "model").mkdir(parents=True)
    (source / "model" / "weights.bin").write_bytes(good)
    (source / "state.json").write_bytes(small)
    ref = CheckpointRef(step=7, attempt=1, experiment_id=experiment)
    manifest = build_manifest(ref, source)
    declared = [{k: e[k] for k in ("path", "size", "sha256")} for e in manifest["files"]]
    plan = _plan(client, grant, 7, declared)
    targets = {t["path"]: t for t in plan["files"]}
    assert targets["model/weights.bin"]["resumable"] and not targets["state.json"]["resumable"]
    http = httpx.Client(timeout=30)
    on_disk = baton.settings.data_dir / "checkpoints" / ref.key

    # Same size, other bytes: refused, nothing kept.
    reply = http.put(targets["state.json"]["url"], content=b'{"step": 8}')
    assert reply.status_code == 422 and "sha256" in reply.text, reply.text
    assert http.put(targets["state.json"]["url"], content=small + b"!").status_code == 413
    assert not (on_disk / "state.json").exists()
    # A chunked upload whose bytes differ: the last chunk is refused, the part discarded.
    corrupt = tmp_path / "corrupt.bin"
    corrupt.write_bytes(good[:-1] + b"\x00")
    with pytest.raises(CheckpointError, match="422"):
        _put_resumable(http, targets["model/weights.bin"], corrupt, chunk_bytes=SMALL_CHUNK)
    assert not (on_disk / "model" / "weights.bin").exists()
    staging = baton.settings.data_dir / "checkpoints" / ".staging"
    assert not list(staging.glob("*.part"))
    # The manifest cannot make an incomplete checkpoint visible.
    reply = http.put(plan["manifest"]["url"], content=json.dumps(manifest).encode())
    assert reply.status_code == 422 and "not been uploaded" in reply.text, reply.text
    assert store.list(experiment_id=experiment) == []

    # With the right bytes it all goes through; a manifest that lies about a hash does not.
    assert http.put(targets["state.json"]["url"], content=small).status_code == 201
    weights = source / "model" / "weights.bin"
    _put_resumable(http, targets["model/weights.bin"], weights, chunk_bytes=SMALL_CHUNK)
    lying = json.loads(json.dumps(manifest))
    lying["files"][0]["sha256"] = sha(b"lie")
    reply = http.put(plan["manifest"]["url"], content=json.dumps(lying).encode())
    assert reply.status_code == 422 and "upload plan" in reply.text, reply.text
    assert store.list(experiment_id=experiment) == []
    reply = http.put(plan["manifest"]["url"], content=json.dumps(manifest).encode())
    assert reply.status_code == 201, reply.text
    assert store.list(experiment_id=experiment) == [ref]
    assert tree(store.download(ref, tmp_path / "back")) == tree(source)
    http.close()


def test_big_file_goes_up_in_chunks_and_resumes_after_a_lost_reply(
    baton_factory: Callable[..., Baton],
    worker_client: Callable[[Baton], WorkerClient],
    tmp_path: Path,
) -> None:
    baton = baton_factory()  # default chunk: 8 MiB
    client = worker_client(baton)
    grant, store = _lease(baton, client)
    experiment = str(grant["experiment_id"])
    source = make_checkpoint(tmp_path / "src", seed=3, weights=21 * 1024 * 1024 + 5)
    ref = store.upload(experiment_id=experiment, attempt=1, step=10, source=source)
    chunks = _access_log(baton, rf'"PUT /api/v1/store/checkpoints/{ref.key}/model/weights\.bin\?')
    statuses = [line.rsplit('" ', 1)[-1].split()[0] for line in chunks]
    assert statuses == ["308", "308", "200"], chunks
    assert store.list(experiment_id=experiment) == [ref]
    assert store.size_bytes(ref) == sum(len(b) for b in tree(source).values())
    assert tree(store.download(ref, tmp_path / "elsewhere")) == tree(source)

    # The reply to a chunk is lost: the worker asks (308 + Range) and goes on from there.
    data = os.urandom(3 * SMALL_CHUNK + 1000)
    path = tmp_path / "lost.bin"
    path.write_bytes(data)
    declared = [{"path": "lost.bin", "size": len(data), "sha256": sha(data)}]
    plan = _plan(client, grant, 20, declared)
    transport = LosesOneReply(nth=2)
    with httpx.Client(transport=transport) as http:
        _put_resumable(http, plan["files"][0], path, chunk_bytes=SMALL_CHUNK)
    size = len(data)
    assert transport.seen == [
        f"bytes 0-{SMALL_CHUNK - 1}/{size}",
        f"bytes {SMALL_CHUNK}-{2 * SMALL_CHUNK - 1}/{size}",
        f"bytes */{size}",
        f"bytes {2 * SMALL_CHUNK}-{3 * SMALL_CHUNK - 1}/{size}",
        f"bytes {3 * SMALL_CHUNK}-{size - 1}/{size}",
    ]
    key = CheckpointRef(step=20, attempt=1, experiment_id=experiment).key
    assert (baton.settings.data_dir / "checkpoints" / key / "lost.bin").read_bytes() == data
