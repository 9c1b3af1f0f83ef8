"""Announces this API instance in Redis while it can record heartbeats, so the reaper knows
when workers could have reached the database through it.

An instance counts from the moment it last became able to: its start, or the end of any
outage it noticed (its database or Redis not answering, or a stall of this thread). The
reaper counts a lease's silence only from then, so no outage on our side turns into lost
work: every lease gets a full term once heartbeats can be recorded again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid

from redis.exceptions import RedisError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from orchestrator.db import READ_ONLY
from orchestrator.dispatch import Dispatcher
from orchestrator.dispatch.queue import now_ms

log = logging.getLogger(__name__)

ANNOUNCE_SECONDS = 1.0
TTL_MS = 5_000
# An instance silent for longer than this is taken for dead (a few missed announcements).
FRESH_MS = 2_500


class Presence(threading.Thread):
    def __init__(self, dispatcher: Dispatcher, engine: Engine) -> None:
        super().__init__(name="baton-presence", daemon=True)
        self.instance = uuid.uuid4().hex[:12]
        self._dispatcher = dispatcher
        self._engine = engine.execution_options(**{READ_ONLY: True})
        self._lock = threading.Lock()
        self._able_since: int | None = None  # None: not able now, or not since an outage
        self._last_ok: int | None = None
        self._halt = threading.Event()

    def announce(self) -> None:
        """Check the database, then say in Redis since when this instance can record
        heartbeats. Raises if it cannot, having withdrawn the announcement where Redis allows."""
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            now = now_ms()
            with self._lock:
                # A gap between good checks is an outage too (a hung connection, a stall).
                last_ok, self._last_ok = self._last_ok, now
                if self._able_since is None or last_ok is None or now - last_ok > FRESH_MS:
                    self._able_since = now
                since = self._able_since
            self._dispatcher.mark_api_alive(instance=self.instance, started_ms=since, ttl_ms=TTL_MS)
        except (SQLAlchemyError, RedisError, OSError):
            self.outage()
            with contextlib.suppress(RedisError, OSError):
                self._dispatcher.withdraw_api(instance=self.instance)
            raise

    def outage(self) -> None:
        """Something on our side failed (e.g. a request met a database error): heartbeats may
        not have been recorded, so this instance counts again only from its next good check."""
        with self._lock:
            self._able_since = None

    def run(self) -> None:
        while not self._halt.wait(ANNOUNCE_SECONDS):
            try:
                self.announce()
            except (RedisError, OSError, SQLAlchemyError) as exc:
                log.warning(
                    "cannot announce API presence (heartbeats may not be recorded): %s", exc
                )

    def stop(self) -> None:
        self._halt.set()
