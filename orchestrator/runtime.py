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
from orchestrator.storage import CHECKPOINTS
from orchestrator.storage.blobs import BlobStore
from orchestrator.storage.signing import StoreUrls
from worker.checkpoints import CheckpointStore, open_store
from worker.checkpoints.base import local_path


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
    def blobs(self) -> dict[str, BlobStore]:
        """The control plane's own stores by namespace, served at /api/v1/store/<namespace>/:
        checkpoints when they are in a local directory (the root of ``checkpoints``)."""
        settings = self.settings
        root = local_path(settings.resolved_checkpoint_url)
        if root is None:
            return {}
        # An upload nobody touched for longer than its URL lives is abandoned.
        stale = max(settings.checkpoint_url_seconds, 3600)
        return {CHECKPOINTS: BlobStore(root, stale_seconds=stale)}

    @cached_property
    def store_urls(self) -> StoreUrls:
        return StoreUrls.of(self.settings)

    @cached_property
    def password_hashing(self) -> HashingPool:
        """Checks passwords, BATON_PASSWORD_HASH_CONCURRENCY at a time (made on first use)."""
        return HashingPool(self.settings.password_hash_concurrency)

    def close(self) -> None:
        if "password_hashing" in self.__dict__:
            self.password_hashing.close()
        self.engine.dispose()
        self.redis.close()
