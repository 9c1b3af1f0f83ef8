"""Announces this API instance in Redis, so the reaper knows heartbeats could arrive."""

from __future__ import annotations

import logging
import threading
import uuid

from redis.exceptions import RedisError

from orchestrator.dispatch import Dispatcher
from orchestrator.dispatch.queue import now_ms

log = logging.getLogger(__name__)

ANNOUNCE_SECONDS = 1.0
TTL_MS = 5_000
# An instance silent for longer than this is taken for dead (a few missed announcements).
FRESH_MS = 2_500


class Presence(threading.Thread):
    def __init__(self, dispatcher: Dispatcher) -> None:
        super().__init__(name="baton-presence", daemon=True)
        self.instance = uuid.uuid4().hex[:12]
        self.started_ms = now_ms()
        self._dispatcher = dispatcher
        self._halt = threading.Event()

    def announce(self) -> None:
        self._dispatcher.mark_api_alive(
            instance=self.instance, started_ms=self.started_ms, ttl_ms=TTL_MS
        )

    def run(self) -> None:
        while not self._halt.wait(ANNOUNCE_SECONDS):
            try:
                self.announce()
            except (RedisError, OSError) as exc:
                log.warning("cannot announce API presence: %s", exc)

    def stop(self) -> None:
        self._halt.set()
