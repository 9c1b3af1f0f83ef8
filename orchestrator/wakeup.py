"""Wakes long-polling claims when something is enqueued, via Redis pub/sub."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from redis import Redis
from redis.exceptions import RedisError

from orchestrator.dispatch.queue import WAKEUP

log = logging.getLogger(__name__)


class Wakeup:
    """An event that is replaced each time it fires, so each waiter sees every later signal."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        return self._event

    async def wait(self, event: asyncio.Event, *, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    def fire_threadsafe(self) -> None:
        self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()


class WakeupListener(threading.Thread):
    """Subscribes to the wake-up channel; reconnects if Redis goes away."""

    def __init__(self, redis: Redis, wakeup: Wakeup) -> None:
        super().__init__(name="baton-wakeup", daemon=True)
        self._redis = redis
        self._wakeup = wakeup
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(WAKEUP)
                while not self._halt.is_set():
                    if pubsub.get_message(timeout=0.5) is not None:
                        self._wakeup.fire_threadsafe()
                pubsub.close()
            except (RedisError, OSError) as exc:
                log.warning("wake-up listener lost Redis (%s); retrying", exc)
                self._halt.wait(1.0)

    def stop(self) -> None:
        self._halt.set()
