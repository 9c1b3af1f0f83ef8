"""GCS through the real google-cloud-storage client, against gcp-storage-emulator in-process."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gcp_storage_emulator.server import create_server
from google.cloud import storage

from tests.e2e.conftest import baton_factory  # noqa: F401 - the e2e stack, reused here
from tests.support.stack import free_port


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """The emulator's URL (what STORAGE_EMULATOR_HOST names); it serves from a thread."""
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def gcs_bucket(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> storage.Bucket:
    """A fresh bucket; every GCS client in this process talks to the emulator."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    return storage.Client().create_bucket(f"baton-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def service_account_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway service-account key: it signs V4 URLs; the emulator never checks them."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    info = {
        "type": "service_account",
        "project_id": "baton-test",
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem.decode(),
        "client_email": "baton-tests@baton-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path_factory.mktemp("gcp") / "service-account.json"
    path.write_text(json.dumps(info))
    return path


@pytest.fixture
def gcs_env(
    gcs_emulator: str,
    gcs_bucket: storage.Bucket,
    service_account_key: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """The control plane's environment for checkpoints in the bucket (also set in this process)."""
    env = {
        "BATON_CHECKPOINT_URL": f"gs://{gcs_bucket.name}/checkpoints",
        "STORAGE_EMULATOR_HOST": gcs_emulator,
        "GOOGLE_APPLICATION_CREDENTIALS": str(service_account_key),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
