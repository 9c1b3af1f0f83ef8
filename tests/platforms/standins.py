"""Local HTTP stand-ins for the EC2 instance metadata service and the Kaggle API.

Real servers on 127.0.0.1 that speak each protocol as the real clients use it: the worker's
IMDSv2 client, and the official `kaggle` package's KaggleApi.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _reply(
        self, status: int, body: str | dict[str, Any], content_type: str = "text/plain"
    ) -> None:
        data = json.dumps(body) if isinstance(body, dict) else body
        if isinstance(body, dict):
            content_type = "application/json"
        raw = data.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_PUT(self) -> None:
        self.server.app.put(self)

    def do_GET(self) -> None:
        self.server.app.get(self)

    def do_POST(self) -> None:
        self.server.app.post(self)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: Any


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` (put/get/post handlers) on a free local port; yields its base URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.app = app
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Imds:
    """IMDSv2: a token from PUT /latest/api/token, presented on every GET."""

    lifecycle: str = "spot"
    instance_type: str = "g4dn.xlarge"
    action: dict[str, str] | None = None  # the spot instance-action, once AWS decides
    tokens: set[str] = field(default_factory=set)
    notice_reads: int = 0

    def put(self, h: _Handler) -> None:
        if h.path != "/latest/api/token" or not h.headers.get(
            "X-aws-ec2-metadata-token-ttl-seconds"
        ):
            h._reply(400, "bad token request")
            return
        token = uuid.uuid4().hex
        self.tokens.add(token)
        h._reply(200, token)

    def get(self, h: _Handler) -> None:
        if h.headers.get("X-aws-ec2-metadata-token") not in self.tokens:
            h._reply(401, "")  # IMDSv2 only: no token, no metadata
            return
        if h.path == "/latest/meta-data/spot/instance-action":
            self.notice_reads += 1
            if self.action is None:
                h._reply(404, "Not Found")
            else:
                h._reply(200, json.dumps(self.action))
            return
        values = {
            "/latest/meta-data/instance-life-cycle": self.lifecycle,
            "/latest/meta-data/instance-type": self.instance_type,
        }
        if h.path in values:
            h._reply(200, values[h.path])
        else:
            h._reply(404, "Not Found")

    def post(self, h: _Handler) -> None:
        h._reply(405, "")


@dataclass
class Kaggle:
    """The three KernelsApiService calls Baton makes, behind HTTP basic auth."""

    username: str = "alice"
    key: str = "kaggle-key"
    used_seconds: int = 3 * 3600
    allowed_seconds: int = 30 * 3600
    refresh: str = "2030-01-05T00:00:00Z"
    fail_pushes: int = 0  # the next N pushes answer 500
    statuses: dict[str, str] = field(default_factory=dict)  # slug -> QUEUED | RUNNING | ...
    pushes: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)  # pushes answered 500
    calls: list[str] = field(default_factory=list)

    def put(self, h: _Handler) -> None:
        h._reply(405, "")

    get = put

    def post(self, h: _Handler) -> None:
        prefix = "/v1/kernels.KernelsApiService/"
        expected = base64.b64encode(f"{self.username}:{self.key}".encode()).decode()
        if h.headers.get("Authorization") != f"Basic {expected}":
            h._reply(401, {"code": 401, "message": "Unauthenticated"})
            return
        if not h.path.startswith(prefix):
            h._reply(404, {"code": 404, "message": f"no route {h.path}"})
            return
        method, body = h.path[len(prefix) :], h._body()
        self.calls.append(method)
        if method == "GetAcceleratorQuotaStatistics":
            h._reply(200, self._quota())
        elif method == "SaveKernel":
            self._save(h, body)
        elif method == "GetKernelSessionStatus":
            slug = f"{body.get('userName')}/{body.get('kernelSlug')}"
            if slug not in self.statuses:
                h._reply(404, {"code": 404, "message": "Notebook not found"})
            else:
                h._reply(200, {"status": self.statuses[slug], "failureMessage": ""})
        else:
            h._reply(404, {"code": 404, "message": f"no method {method}"})

    def _quota(self) -> dict[str, Any]:
        return {
            "quotaRefreshTime": self.refresh,
            "gpuQuota": {
                "timeUsed": f"{self.used_seconds}s",
                "totalTimeAllowed": f"{self.allowed_seconds}s",
            },
        }

    def _save(self, h: _Handler, body: dict[str, Any]) -> None:
        if self.fail_pushes > 0:
            self.fail_pushes -= 1
            self.refused.append(body)
            h._reply(500, {"code": 500, "message": "Internal error, try again"})
            return
        self.pushes.append(body)
        slug = body["slug"]
        self.statuses[slug] = "QUEUED"
        version = sum(1 for p in self.pushes if p["slug"] == slug)
        h._reply(
            200,
            {
                "ref": f"/code/{slug}",
                "url": f"https://www.kaggle.com/code/{slug}",
                "versionNumber": version,
            },
        )
