"""An EC2 instance metadata service (IMDSv2) for one spot session, run inside its notebook's
namespace by the bench (as the platform): the spot interruption notice appears at
``--notice-at`` (Unix time), as AWS posts it about two minutes before it terminates the
instance. Stdlib only: it runs as ``python imds.py`` in the namespace.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "bench-imds-token"


def serve(port: int, notice_at: float, end_at: float) -> None:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, code: int, body: str = "") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:
            self._send(200, TOKEN) if self.path == "/latest/api/token" else self._send(404)

        def do_GET(self) -> None:
            if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                self._send(401)
            elif self.path == "/latest/meta-data/instance-life-cycle":
                self._send(200, "spot")
            elif self.path == "/latest/meta-data/instance-type":
                self._send(200, "g4dn.xlarge")
            elif self.path == "/latest/meta-data/spot/instance-action" and time.time() >= notice_at:
                when = datetime.fromtimestamp(end_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                self._send(200, json.dumps({"action": "terminate", "time": when}))
            else:
                self._send(404)

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--notice-at", type=float, required=True)
    parser.add_argument("--end-at", type=float, required=True)
    args = parser.parse_args()
    serve(args.port, args.notice_at, args.end_at)
