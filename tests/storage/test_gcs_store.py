"""The GCS backend through the real client against the emulator: upload, resume elsewhere."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from google.cloud import storage

from worker.checkpoints import CheckpointError, open_store
from worker.checkpoints.base import MANIFEST
from worker.checkpoints.gcs import CHUNK_UNIT, GCSCheckpointStore

CHUNK = 4 * CHUNK_UNIT
BIG = 9 * 1024 * 1024 + 17  # above the client's 8 MiB: a resumable upload, ten chunks
SMALL = 700_000


def make_checkpoint(root: Path, *, seed: int, weights: int = SMALL, empty: bool = True) -> Path:
    """A checkpoint dir with a nested file of ``weights`` bytes, a small one and an empty one."""
    root.mkdir(parents=True)
    (root / "model").mkdir()
    (root / "model" / "weights.bin").write_bytes(os.urandom(weights))
    (root / "state.json").write_text(json.dumps({"step": seed}))
    if empty:
        (root / "empty").write_bytes(b"")
    return root


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_upload_then_resume_elsewhere_byte_identical(
    gcs_bucket: storage.Bucket, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = make_checkpoint(tmp_path / "a", seed=1, weights=BIG)
    here = GCSCheckpointStore(bucket=gcs_bucket, prefix="runs", chunk_bytes=CHUNK)
    with caplog.at_level(logging.INFO, logger="gcp_storage_emulator"):
        ref = here.upload(experiment_id="7", attempt=1, step=40, source=source)
    # The file above one chunk went up as a resumable upload, in chunks.
    requests = [r.getMessage() for r in caplog.records]
    assert any("uploadType=resumable" in line for line in requests), requests
    assert sum("PUT /upload/" in line for line in requests) == 10

    # Another machine: a fresh client opened from the URL alone.
    elsewhere = open_store(f"gs://{gcs_bucket.name}/runs")
    assert isinstance(elsewhere, GCSCheckpointStore)
    assert elsewhere.list(experiment_id="7") == [ref]
    assert elsewhere.size_bytes(ref) == sum(len(b) for b in tree(source).values())
    resumed = elsewhere.download(ref, tmp_path / "b")
    assert tree(resumed) == tree(source)
    names = {b.name for b in gcs_bucket.client.list_blobs(gcs_bucket)}
    assert f"runs/7/0001-000000000040/{MANIFEST}" in names
    assert "runs/7/0001-000000000040/model/weights.bin" in names


def test_manifest_last_delete_first_and_corruption_is_refused(
    gcs_bucket: storage.Bucket, tmp_path: Path
) -> None:
    store = GCSCheckpointStore(bucket=gcs_bucket, chunk_bytes=CHUNK)
    source = make_checkpoint(tmp_path / "src", seed=2)
    complete = store.upload(experiment_id="3", attempt=1, step=10, source=source)
    # An upload that died before its manifest: files there, checkpoint invisible.
    half = store.upload(experiment_id="3", attempt=1, step=20, source=source)
    gcs_bucket.blob(store.object_name(half, MANIFEST)).delete()
    assert store.list(experiment_id="3") == [complete]
    with pytest.raises(CheckpointError, match="not found"):
        store.download(half, tmp_path / "half")
    # Experiment "30" shares the prefix "3" but not the folder.
    store.upload(experiment_id="30", attempt=1, step=1, source=source)
    assert store.list(experiment_id="3") == [complete]

    # Same size, other bytes: the bucket's own checksums match, our sha256 does not.
    weights = gcs_bucket.blob(store.object_name(complete, "model/weights.bin"))
    weights.upload_from_string(os.urandom(SMALL))
    with pytest.raises(CheckpointError, match="corrupt"):
        store.download(complete, tmp_path / "corrupt")

    store.delete(complete)
    store.delete(half)
    assert store.list(experiment_id="3") == []
    assert store.objects(complete) == {} and store.objects(half) == {}
