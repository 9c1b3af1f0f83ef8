"""The Redis side of dispatch. Every multi-key change is one Lua script, so it is atomic.

Redis is the fast index, not the record: the database decides whether a lease token is
current (see ``orchestrator.services.leases``); these scripts keep Redis in step with it.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

from redis import Redis

from orchestrator.dispatch.capability import Capability, Requirement, capability_class

PREFIX = "baton:"
READY = PREFIX + "ready:"
CLASSES = PREFIX + "classes"
LEASES = PREFIX + "leases"
LEASE = PREFIX + "lease:"
FENCE = PREFIX + "fence"
WAKEUP = PREFIX + "wakeup"
API_ALIVE = PREFIX + "api:"

# Score = (MAX_PRIORITY - priority) * 10^13 + enqueue time in ms: higher priority first, then
# older first. 100 * 10^13 stays below 2^53, so scores are exact in Redis' doubles.
PRIORITY_STRIDE = 10**13
MAX_PRIORITY = 100


def now_ms() -> int:
    return int(time.time() * 1000)


def ready_score(priority: int, queued_at_ms: int) -> int:
    return (MAX_PRIORITY - priority) * PRIORITY_STRIDE + queued_at_ms


def _script(name: str) -> str:
    return resources.files("orchestrator.dispatch").joinpath(f"lua/{name}.lua").read_text()


def _ids(raw: Any) -> list[int]:
    """Redis members and values as ints (redis-py's reply types are too wide to narrow)."""
    return [int(item) for item in raw]


@dataclass(frozen=True)
class Claimed:
    experiment_id: int
    token: str


@dataclass(frozen=True)
class Requeue:
    requirement: Requirement
    priority: int
    queued_at_ms: int


class Dispatcher:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._claim = redis.register_script(_script("claim"))
        self._extend = redis.register_script(_script("extend"))
        self._end = redis.register_script(_script("end"))

    # --- queueing -------------------------------------------------------------------------

    def _ready_key(self, req: Requirement) -> str:
        return READY + capability_class(req)

    def enqueue(
        self, *, experiment_id: int, requirement: Requirement, priority: int, queued_at_ms: int
    ) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(CLASSES, capability_class(requirement), requirement.to_json())
        pipe.zadd(
            self._ready_key(requirement), {str(experiment_id): ready_score(priority, queued_at_ms)}
        )
        pipe.publish(WAKEUP, str(experiment_id))
        pipe.execute()

    def remove(self, *, experiment_id: int, requirement: Requirement) -> None:
        self.remove_from_class(
            experiment_id=experiment_id, class_name=capability_class(requirement)
        )

    def remove_from_class(self, *, experiment_id: int, class_name: str) -> None:
        self.redis.zrem(READY + class_name, str(experiment_id))

    def classes(self) -> dict[str, Requirement]:
        raw: dict[bytes, bytes] = self.redis.hgetall(CLASSES)  # type: ignore[assignment]
        return {name.decode(): Requirement.from_json(spec) for name, spec in raw.items()}

    def claim(self, *, capability: Capability, worker_id: int, lease_ms: int) -> Claimed | None:
        keys = [READY + name for name, req in self.classes().items() if capability.satisfies(req)]
        if not keys:
            return None
        reply = self._claim(
            keys=[LEASES, FENCE, *keys],
            args=[now_ms(), lease_ms, worker_id, secrets.token_hex(16), LEASE],
        )
        if reply is None:
            return None
        member, token = reply
        return Claimed(experiment_id=int(member), token=token.decode())

    # --- leases ---------------------------------------------------------------------------

    def extend(self, *, experiment_id: int, token: str, worker_id: int, expires_ms: int) -> bool:
        member = str(experiment_id)
        ok = self._extend(
            keys=[LEASES, LEASE + member], args=[token, expires_ms, member, worker_id]
        )
        return bool(ok)

    def end(self, *, experiment_id: int, token: str, requeue: Requeue | None = None) -> bool:
        member = str(experiment_id)
        ready_key = self._ready_key(requeue.requirement) if requeue else READY + "unused"
        score = ready_score(requeue.priority, requeue.queued_at_ms) if requeue else ""
        if requeue:
            self.redis.hset(
                CLASSES, capability_class(requeue.requirement), requeue.requirement.to_json()
            )
        ok = self._end(keys=[LEASES, LEASE + member, ready_key], args=[token, member, score])
        if requeue:
            self.redis.publish(WAKEUP, member)
        return bool(ok)

    def lease_token(self, *, experiment_id: int) -> str | None:
        token = self.redis.hget(LEASE + str(experiment_id), "token")
        if token is None:
            # A lease in the index with no hash: end() with any token clears it.
            return "" if self.redis.zscore(LEASES, str(experiment_id)) is not None else None
        return token.decode()  # type: ignore[union-attr]

    def expired(self, *, at_ms: int) -> list[int]:
        return _ids(self.redis.zrangebyscore(LEASES, "-inf", at_ms))

    # --- views for reconcile and metrics --------------------------------------------------

    def ready_members(self) -> dict[int, str]:
        """Experiment id -> capability class for everything in a ready set."""
        members: dict[int, str] = {}
        for name in self.classes():
            for member in _ids(self.redis.zrange(READY + name, 0, -1)):
                members[member] = name
        return members

    def leased_members(self) -> set[int]:
        return set(_ids(self.redis.zrange(LEASES, 0, -1)))

    def queue_depths(self) -> dict[str, int]:
        return {name: self.redis.zcard(READY + name) for name in self.classes()}

    # --- control-plane presence -----------------------------------------------------------

    def mark_api_alive(self, *, instance: str, started_ms: int, ttl_ms: int) -> None:
        self.redis.set(API_ALIVE + instance, f"{started_ms}:{now_ms()}", px=ttl_ms)

    def withdraw_api(self, *, instance: str) -> None:
        self.redis.delete(API_ALIVE + instance)

    def api_up_since(self, *, fresh_ms: int) -> int | None:
        """Since when the longest-up live API instance could record heartbeats (its start, or
        the end of its last outage, database included), or None if none is up.

        An instance counts as live only if it announced itself within ``fresh_ms``: a killed
        API's key outlives it by its TTL, and must not vouch for heartbeats nobody received.
        The reaper gives a worker a full lease after the API came back, so an API outage
        never turns into lost jobs: workers could not heartbeat while nothing listened.
        """
        keys = list(self.redis.scan_iter(match=API_ALIVE + "*", count=100))
        if not keys:
            return None
        now = now_ms()
        starts = []
        for raw in cast(list[bytes | None], self.redis.mget(keys)):
            if raw is None:
                continue
            started, _, announced = raw.decode().partition(":")
            if announced and now - int(announced) <= fresh_ms:
                starts.append(int(started))
        return min(starts) if starts else None
