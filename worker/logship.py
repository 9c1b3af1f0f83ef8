"""Ships the job's output (its log file) to the control plane while it runs.

Each chunk carries the byte offset of its first byte in the shipped stream, so a chunk
sent twice (the reply was lost) is stored once. A chunk is resent until it is acknowledged;
a refused lease (409) ends shipping: the attempt is no longer ours.
"""

from __future__ import annotations

import codecs
import logging
import threading
from pathlib import Path

from worker.client import ApiError, LeaseLost, Unavailable, WorkerClient

log = logging.getLogger(__name__)

SHIP_SECONDS = 1.0
CHUNK_BYTES = 64 * 1024
# A job printing faster than we ship loses the middle, not the newest output: beyond this
# backlog the shipper skips ahead (the control plane keeps only a capped tail anyway).
MAX_BACKLOG_BYTES = 1024 * 1024
REQUEST_TIMEOUT = 10.0
PATH = "/api/v1/leases/logs"


class LogShipper(threading.Thread):
    def __init__(
        self, client: WorkerClient, *, path: Path, lease_token: str, interval: float = SHIP_SECONDS
    ) -> None:
        super().__init__(name="baton-logship", daemon=True)
        self.client = client
        self.path = path
        self.lease_token = lease_token
        self.interval = interval
        self._stopping = threading.Event()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._read_to = 0  # bytes of the file consumed
        self._offset = 0  # bytes of the stream acknowledged
        self._pending: str | None = None
        self._refused = False

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            self._ship()
        self._ship(final=True)

    def finish(self, *, timeout: float = 3 * REQUEST_TIMEOUT) -> None:
        """Ship what is left (the job has exited), then stop. Bounded: the final report waits."""
        self._stopping.set()
        self.join(timeout)

    def _ship(self, *, final: bool = False) -> None:
        """Send chunks until caught up; on a failure keep the chunk for the next round."""
        while not self._refused:
            if self._pending is None:
                self._pending = self._next_chunk(final=final)
            if not self._pending:
                self._pending = None
                return
            chunk = {"lease_token": self.lease_token, "offset": self._offset, "data": self._pending}
            try:
                self.client.request("POST", PATH, json=chunk, timeout=REQUEST_TIMEOUT, retry=False)
            except LeaseLost as exc:
                log.info("log shipping stopped: %s", exc.detail)
                self._refused = True
                return
            except (Unavailable, ApiError) as exc:
                log.warning("log shipping failed (%s); will retry", exc)
                return
            self._offset += len(self._pending.encode())
            self._pending = None

    def _next_chunk(self, *, final: bool) -> str:
        try:
            with self.path.open("rb") as fh:
                size = fh.seek(0, 2)
                if size - self._read_to > MAX_BACKLOG_BYTES:
                    skipped = size - MAX_BACKLOG_BYTES - self._read_to
                    log.warning("job output too fast to ship: skipping %s bytes", skipped)
                    self._read_to += skipped
                    self._offset += skipped  # the control plane sees the gap and starts afresh
                    self._decoder.reset()
                fh.seek(self._read_to)
                raw = fh.read(CHUNK_BYTES)
        except FileNotFoundError:
            return ""
        self._read_to += len(raw)
        # The incremental decoder holds back a character split across two reads, except at
        # the very end (the job has exited: a short read is the end of the file).
        text = self._decoder.decode(raw, final=final and len(raw) < CHUNK_BYTES)
        # NUL cannot be stored in PostgreSQL text; the control plane replaces it the same way.
        return text.replace("\x00", "\ufffd")
