"""A manifest is data from the store: its paths must never put a file outside the target folder.

Someone who can write to the store (a shared bucket, a mounted directory) writes a manifest
naming ``../x`` or an absolute path, with the right size and hash for the bytes they placed;
a worker resuming from that checkpoint must refuse it and write nothing outside ``dest``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from google.cloud import storage

from worker.checkpoints import CheckpointError, CheckpointRef, CheckpointStore
from worker.checkpoints.base import MANIFEST
from worker.checkpoints.gcs import GCSCheckpointStore
from worker.checkpoints.local import LocalCheckpointStore

PAYLOAD = b"planted by whoever can write to the store\n"
STATE = b'{"step": 3}'
# Writes ``data`` where the store keeps ``path`` of checkpoint ``ref``; returns that place on
# this machine, if it is one.
Plant = Callable[[CheckpointRef, str, bytes], Path | None]


def _entry(path: str, data: bytes) -> dict[str, object]:
    return {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _evil_paths(tmp_path: Path) -> list[str]:
    return ["../escape.txt", "inner/../../escape.txt", str(tmp_path / "absolute.txt")]


def _attack(store: CheckpointStore, plant: Plant, tmp_path: Path, evil: str) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "state.json").write_bytes(STATE)
    ref = store.upload(experiment_id="17", attempt=1, step=3, source=source)
    planted = {plant(ref, evil, PAYLOAD)}
    files = [_entry("state.json", STATE), _entry(evil, PAYLOAD)]
    manifest = {"experiment_id": "17", "attempt": 1, "step": 3, "files": files}
    plant(ref, MANIFEST, json.dumps(manifest).encode())

    dest = tmp_path / "resume" / "dest"
    with pytest.raises(CheckpointError, match="not a plain relative path"):
        store.download(ref, dest)
    landed = {
        p
        for p in tmp_path.rglob("*")
        if p.is_file() and p.resolve() not in planted and p.read_bytes() == PAYLOAD
    }
    assert not landed, f"a manifest path put a file outside {dest}: {landed}"


@pytest.mark.parametrize("which", range(3))
def test_local_store_refuses_paths_leaving_the_target(tmp_path: Path, which: int) -> None:
    store = LocalCheckpointStore(tmp_path / "store")

    def plant(ref: CheckpointRef, path: str, data: bytes) -> Path:
        target = store.root / ref.key / path  # an absolute ``path`` names a file on this machine
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target.resolve()

    _attack(store, plant, tmp_path, _evil_paths(tmp_path)[which])


@pytest.mark.parametrize("which", range(3))
def test_gcs_store_refuses_paths_leaving_the_target(
    gcs_bucket: storage.Bucket, tmp_path: Path, which: int
) -> None:
    store = GCSCheckpointStore(bucket=gcs_bucket, prefix="runs")

    def plant(ref: CheckpointRef, path: str, data: bytes) -> None:
        # Object names are free text in GCS: ``..`` and a leading ``/`` are just characters.
        # The emulator refuses ``..`` in a name; there the manifest entry alone is the attack.
        if ".." not in path.split("/"):
            store.bucket.blob(store.object_name(ref, path)).upload_from_string(data)

    _attack(store, plant, tmp_path, _evil_paths(tmp_path)[which])


def test_plain_nested_paths_still_download(tmp_path: Path) -> None:
    store = LocalCheckpointStore(tmp_path / "store")
    source = tmp_path / "source"
    (source / "model" / "layers").mkdir(parents=True)
    (source / "model" / "layers" / "w.bin").write_bytes(b"w")
    (source / "..hidden-but-fine").write_bytes(b"h")
    ref = store.upload(experiment_id="17", attempt=1, step=4, source=source)
    dest = store.download(ref, tmp_path / "dest")
    assert (dest / "model" / "layers" / "w.bin").read_bytes() == b"w"
    assert (dest / "..hidden-but-fine").read_bytes() == b"h"
