"""The live resources of one control-plane process, built from settings on demand."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from redis import Redis
from rq import Queue
from sqlalchemy import Engine

from orchestrator.db import make_engine
from orchestrator.dispatch import Dispatcher
from orchestrator.security import HashingPool
from orchestrator.settings import Settings
from worker.checkpoints import CheckpointStore, open_store


class RedisNotConfigured(RuntimeError):
    pass


def connect_redis(url: str) -> Redis:
    if not url:
        raise RedisNotConfigured(
            "REDIS_URL is not set: point it at a Redis server, or use `baton up`, "
            "which starts an embedded one"
        )
    return Redis.from_url(url, health_check_interval=30)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    redis: Redis
    dispatcher: Dispatcher

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        redis = connect_redis(settings.redis_url)
        return cls(
            settings=settings,
            engine=make_engine(settings.resolved_database_url),
            redis=redis,
            dispatcher=Dispatcher(redis),
        )

    @property
    def queue(self) -> Queue:
        return Queue(self.settings.rq_queue, connection=self.redis)

    @cached_property
    def checkpoints(self) -> CheckpointStore:
        """The checkpoint store, opened on first use (only some processes need a GCS client)."""
        return open_store(self.settings.resolved_checkpoint_url)

    @cached_property
    def password_hashing(self) -> HashingPool:
        """Checks passwords, BATON_PASSWORD_HASH_CONCURRENCY at a time (made on first use)."""
        return HashingPool(self.settings.password_hash_concurrency)

    def close(self) -> None:
        if "password_hashing" in self.__dict__:
            self.password_hashing.close()
        self.engine.dispose()
        self.redis.close()
