"""Enrollment codes as a kernel or a pasted cell carries them, and their exchange."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

CODE = re.compile(r"bec_[A-Za-z0-9_-]{20,}")


def code_in(text: str) -> str:
    """The one enrollment code a cell, script or kernel carries."""
    (code,) = set(CODE.findall(text))
    return code


def exchange(client: TestClient, code: str) -> str:
    """The worker token the code buys (asserting the exchange succeeds)."""
    reply = client.post("/api/v1/workers/enroll", json={"code": code})
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["token"]
    assert token.startswith("bwt_")
    return token
