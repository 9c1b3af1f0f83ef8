"""A resumable upload whose reply is lost midway carries on from what the session holds."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from google.cloud import storage

from worker.checkpoints import signed

CHUNK = 256 * 1024


class LosesOneReply(httpx.BaseTransport):
    """Delivers every request to the emulator, but drops the reply to request number ``nth``:
    the chunk arrived, and the sender cannot know."""

    def __init__(self, nth: int) -> None:
        self.real = httpx.HTTPTransport()
        self.nth = nth
        self.seen: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.real.handle_request(request)
        response.read()
        self.seen.append(request.headers.get("content-range", ""))
        if len(self.seen) == self.nth:
            raise httpx.ReadError("connection reset", request=request)
        return response


def test_lost_reply_resumes_from_the_session_offset(
    gcs_bucket: storage.Bucket, tmp_path: Path
) -> None:
    data = os.urandom(3 * CHUNK + 1000)
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    blob = gcs_bucket.blob("ckpt/weights.bin")
    session = blob.create_resumable_upload_session(size=len(data))
    transport = LosesOneReply(nth=2)

    with httpx.Client(transport=transport) as http:
        signed._put_resumable(
            http, {"path": "weights.bin", "url": session}, path, chunk_bytes=CHUNK
        )

    size = len(data)
    assert transport.seen == [
        f"bytes 0-{CHUNK - 1}/{size}",
        f"bytes {CHUNK}-{2 * CHUNK - 1}/{size}",  # arrived; its reply was lost
        f"bytes */{size}",  # so: how much do you hold?
        f"bytes {2 * CHUNK}-{3 * CHUNK - 1}/{size}",  # on from there, nothing sent twice
        f"bytes {3 * CHUNK}-{size - 1}/{size}",
    ]
    assert gcs_bucket.blob("ckpt/weights.bin").download_as_bytes() == data
