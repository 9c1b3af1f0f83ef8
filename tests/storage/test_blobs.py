"""The control plane's blob store on a real directory, and which store a Grant names."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.settings import Settings
from orchestrator.storage.blobs import BadKey, BlobStore, Mismatch, TooLarge
from tests.support.stack import SECRET


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def _chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_put_stream_stores_atomically_and_reports_hash_and_size(store: BlobStore) -> None:
    data = os.urandom(50_000)
    key = "bundles/sha256/abc.tar.gz"
    digest, size = store.put_stream(
        key, _chunks(data), expected_sha256=hashlib.sha256(data).hexdigest()
    )
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert store.size(key) == len(data)
    assert store.path(key).read_bytes() == data
    assert not list(store.staging.iterdir())


def test_a_bad_upload_leaves_nothing_and_keeps_what_was_there(store: BlobStore) -> None:
    key = "a/b.bin"
    store.put_stream(key, [b"old"])
    with pytest.raises(Mismatch, match="sha256"):
        store.put_stream(key, [b"new"], expected_sha256=hashlib.sha256(b"other").hexdigest())
    with pytest.raises(TooLarge, match="limit of 4 bytes"):
        store.put_stream(key, _chunks(b"x" * 10, 3), max_bytes=4)

    def broken() -> Iterator[bytes]:
        yield b"half"
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        store.put_stream(key, broken())
    assert store.path(key).read_bytes() == b"old"
    assert not list(store.staging.iterdir())


@pytest.mark.parametrize(
    "key", ["", "../x", "a/../../x", "/etc/passwd", "a\\..\\x", "a//b", "./a", ".staging/x", "a\0b"]
)
def test_keys_stay_inside_the_root(store: BlobStore, key: str) -> None:
    with pytest.raises(BadKey):
        store.put_stream(key, [b"x"])
    with pytest.raises(BadKey):
        store.path(key)


def test_a_symlink_out_of_the_root_is_refused(store: BlobStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store.root.mkdir(parents=True)
    (store.root / "link").symlink_to(outside)
    with pytest.raises(BadKey):
        store.put_stream("link/x", [b"x"])
    assert not (outside / "x").exists()


def _settings(tmp_path: Path, **env: str) -> Settings:
    values = {"BATON_ENV": "test", "BATON_SECRET_KEY": SECRET, "BATON_DATA_DIR": str(tmp_path)}
    return Settings(**{**values, **env})  # type: ignore[arg-type]


def test_workers_reach_a_local_store_through_the_control_plane(tmp_path: Path) -> None:
    assert _settings(tmp_path).worker_checkpoint_url == "baton-signed:control-plane"
    explicit = (tmp_path / "shared").as_uri()
    assert (
        _settings(tmp_path, BATON_CHECKPOINT_URL=explicit).worker_checkpoint_url
        == "baton-signed:control-plane"
    )
    direct = _settings(tmp_path, BATON_CHECKPOINT_DIRECT="true")
    assert direct.worker_checkpoint_url == (tmp_path / "checkpoints").resolve().as_uri()
    gs = {"BATON_CHECKPOINT_URL": "gs://bucket/ckpt"}
    assert _settings(tmp_path, **gs).worker_checkpoint_url == "baton-signed:gs://bucket/ckpt"
    unsigned = _settings(tmp_path, **gs, BATON_CHECKPOINT_SIGNED_URLS="false")
    assert unsigned.worker_checkpoint_url == "gs://bucket/ckpt"
