"""The Redis side of dispatch. Every multi-key change is one Lua script, so it is atomic.

Redis is the fast index, not the record: the database decides whether a lease token is
current (see ``orchestrator.services.leases``); these scripts keep Redis in step with it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

from redis import Redis

from orchestrator.dispatch.capability import Capability, Requirement, capability_class

PREFIX = "baton:"
# One ready set per (capability class, lane): baton:ready:<class>:<owner id>[:own].
READY = PREFIX + "ready:"
# Ready-set name ("<class>:<lane>") -> the class's requirement JSON, for every set ever used.
QUEUES = PREFIX + "queues"
LEASES = PREFIX + "leases"
LEASE = PREFIX + "lease:"
FENCE = PREFIX + "fence"
WAKEUP = PREFIX + "wakeup"
API_ALIVE = PREFIX + "api:"
# Before owner lanes (migration 0011): class name -> requirement, and one ready set per class
# (baton:ready:<class>, no lane). Only ``drop_legacy_ready_sets`` still names them.
LEGACY_CLASSES = PREFIX + "classes"

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
class Lane:
    """Whose work a ready set holds. A shared lane holds an owner's experiments that any worker
    serving the owner may take (the owner's own, or one shared through a pool); a private lane
    holds those naming secrets, which only the owner's own workers take."""

    owner_id: int
    private: bool = False

    def __str__(self) -> str:
        return f"{self.owner_id}:own" if self.private else str(self.owner_id)


@dataclass(frozen=True)
class ReadyQueue:
    class_name: str
    lane: Lane

    @property
    def name(self) -> str:
        return f"{self.class_name}:{self.lane}"

    @property
    def key(self) -> str:
        return READY + self.name

    @classmethod
    def parse(cls, name: str) -> ReadyQueue:
        # Class names never hold ':' (see capability_class).
        class_name, owner, *own = name.split(":")
        return cls(class_name, Lane(int(owner), private=own == ["own"]))

    @classmethod
    def of(cls, requirement: Requirement, lane: Lane) -> ReadyQueue:
        return cls(capability_class(requirement), lane)


def lanes_served(owner_id: int | None, shared_owner_ids: Iterable[int]) -> frozenset[Lane]:
    """A worker token's lanes: all of its owner's work, the shareable work of pool users."""
    lanes = {Lane(user_id) for user_id in shared_owner_ids}
    if owner_id is not None:
        lanes |= {Lane(owner_id), Lane(owner_id, private=True)}
    return frozenset(lanes)


@dataclass(frozen=True)
class Claimed:
    experiment_id: int
    token: str


@dataclass(frozen=True)
class Requeue:
    requirement: Requirement
    lane: Lane
    priority: int
    queued_at_ms: int


class Dispatcher:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._claim = redis.register_script(_script("claim"))
        self._extend = redis.register_script(_script("extend"))
        self._end = redis.register_script(_script("end"))

    # --- queueing -------------------------------------------------------------------------

    def enqueue(
        self,
        *,
        experiment_id: int,
        requirement: Requirement,
        lane: Lane,
        priority: int,
        queued_at_ms: int,
    ) -> None:
        queue = ReadyQueue.of(requirement, lane)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(QUEUES, queue.name, requirement.to_json())
        pipe.zadd(queue.key, {str(experiment_id): ready_score(priority, queued_at_ms)})
        pipe.publish(WAKEUP, str(experiment_id))
        pipe.execute()

    def remove(self, *, experiment_id: int, requirement: Requirement, lane: Lane) -> None:
        self.remove_from(experiment_id=experiment_id, queue=ReadyQueue.of(requirement, lane))

    def remove_from(self, *, experiment_id: int, queue: ReadyQueue) -> None:
        self.redis.zrem(queue.key, str(experiment_id))

    def queues(self) -> dict[ReadyQueue, Requirement]:
        raw: dict[bytes, bytes] = self.redis.hgetall(QUEUES)  # type: ignore[assignment]
        return {
            ReadyQueue.parse(name.decode()): Requirement.from_json(spec)
            for name, spec in raw.items()
        }

    def claim(
        self, *, capability: Capability, lanes: frozenset[Lane], worker_id: int, lease_ms: int
    ) -> Claimed | None:
        """The best head of every ready set this worker may take (its capability satisfies the
        class, it serves the lane), popped and leased in one script."""
        keys = [
            queue.key
            for queue, req in self.queues().items()
            if queue.lane in lanes and capability.satisfies(req)
        ]
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
        queue = ReadyQueue.of(requeue.requirement, requeue.lane) if requeue else None
        ready_key = queue.key if queue else READY + "unused"
        score = ready_score(requeue.priority, requeue.queued_at_ms) if requeue else ""
        if requeue and queue:
            self.redis.hset(QUEUES, queue.name, requeue.requirement.to_json())
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

    def drop_legacy_ready_sets(self) -> int:
        """Delete the lane-less ready sets an older Baton left, and their index; returns how
        many sets there were. What they held is still queued in the database, and reconcile
        puts it in its lane's set."""
        names = [name.decode() for name in cast(list[bytes], self.redis.hkeys(LEGACY_CLASSES))]
        if not names:  # every reconcile after the first: one read, nothing to delete
            return 0
        # Class names hold no ':' (``capability_class``); lane sets always do.
        legacy = [READY + name for name in names if ":" not in name]
        found = int(self.redis.exists(*legacy)) if legacy else 0
        self.redis.delete(LEGACY_CLASSES, *legacy)
        return found

    # --- views for reconcile and metrics --------------------------------------------------

    def ready_members(self) -> dict[int, ReadyQueue]:
        """Experiment id -> its ready set, for everything in one."""
        members: dict[int, ReadyQueue] = {}
        for queue in self.queues():
            for member in _ids(self.redis.zrange(queue.key, 0, -1)):
                members[member] = queue
        return members

    def leased_members(self) -> set[int]:
        return set(_ids(self.redis.zrange(LEASES, 0, -1)))

    def queue_depths(self) -> dict[str, int]:
        """Ready experiments per capability class, every lane counted."""
        depths: dict[str, int] = {}
        for queue in self.queues():
            depth = self.redis.zcard(queue.key)
            depths[queue.class_name] = depths.get(queue.class_name, 0) + depth
        return depths

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
