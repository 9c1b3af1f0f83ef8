"""The request body limit holds for chunked bodies too, on a real `baton serve`.

A body sent with ``Transfer-Encoding: chunked`` declares no length; it is counted as it
arrives and refused past MAX_BODY_BYTES, before any route (or login) sees it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx

from orchestrator.app import MAX_BODY_BYTES
from tests.e2e.conftest import Baton

CHUNK = 64 * 1024


def _chunked(body: bytes) -> Iterator[bytes]:
    """An iterator body: httpx sends it chunked, with no Content-Length."""
    return iter([body[i : i + CHUNK] for i in range(0, len(body), CHUNK)])


def _over_limit_json() -> bytes:
    # Valid JSON, so only the size can be what refuses it.
    return json.dumps({"name": "x" * (MAX_BODY_BYTES + CHUNK), "kind": "command"}).encode()


def test_chunked_body_over_the_limit_gets_413(baton_factory: Callable[..., Baton]) -> None:
    baton = baton_factory()
    sent: list[httpx.Request] = []
    big = _over_limit_json()
    with httpx.Client(base_url=baton.stack.url, timeout=60) as raw:
        for path, headers in (
            ("/api/v1/experiments", dict(baton.http.headers)),
            ("/auth/login", {"content-type": "application/x-www-form-urlencoded"}),
        ):
            reply = raw.post(path, content=_chunked(big), headers=headers)
            sent.append(reply.request)
            assert reply.status_code == 413, (path, reply.status_code, reply.text[:300])
            body = reply.json()
            assert body["code"] == "too_large"
            assert f"over {MAX_BODY_BYTES // (1024 * 1024)} MiB" in body["detail"]
    for request in sent:
        assert request.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in request.headers
    # Nothing of the refused submission was stored.
    listed = baton.http.get("/api/v1/experiments").json()
    assert listed["items"] == []


def test_chunked_body_within_the_limit_reaches_the_route(
    baton_factory: Callable[..., Baton],
) -> None:
    baton = baton_factory()
    spec = {"name": "chunked", "kind": "command", "config": {"command": "true"}}
    reply = baton.http.post(
        "/api/v1/experiments",
        content=_chunked(json.dumps(spec).encode()),
        headers={"content-type": "application/json"},
    )
    assert reply.request.headers.get("transfer-encoding") == "chunked"
    assert reply.status_code == 201, reply.text
    assert reply.json()["name"] == "chunked"
    assert baton.http.get(f"/api/v1/experiments/{reply.json()['id']}").status_code == 200
