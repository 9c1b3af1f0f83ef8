"""The control plane's RQ worker, with RQ's cron scheduler enqueueing the periodic jobs."""

from __future__ import annotations

import logging
import multiprocessing
from multiprocessing.process import BaseProcess

from redis import Redis
from rq import SimpleWorker
from rq.cron import CronScheduler

from orchestrator.background import platforms, tasks
from orchestrator.platforms import kaggle
from orchestrator.runtime import connect_redis
from orchestrator.settings import Settings

log = logging.getLogger(__name__)


def run_cron(settings: Settings) -> None:
    """Blocks: enqueue the reaper and reconcile at their intervals (a process of its own)."""
    scheduler = CronScheduler(
        connection=connect_redis(settings.redis_url), name=f"baton-cron-{settings.rq_queue}"
    )
    scheduler.register(
        tasks.reap_leases,
        queue_name=settings.rq_queue,
        interval=settings.reaper_seconds,
        result_ttl=60,
    )
    scheduler.register(
        tasks.reconcile_queues,
        queue_name=settings.rq_queue,
        interval=settings.reconcile_seconds,
        result_ttl=60,
    )
    scheduler.register(
        tasks.apply_retention,
        queue_name=settings.rq_queue,
        interval=settings.retention_seconds,
        result_ttl=600,
    )
    if kaggle.enabled(settings):
        scheduler.register(
            platforms.rotate_kaggle,
            queue_name=settings.rq_queue,
            interval=settings.kaggle_rotation_seconds,
            result_ttl=600,
        )
    scheduler.start()


def run_worker(settings: Settings, *, burst: bool = False, with_cron: bool = True) -> None:
    redis: Redis = connect_redis(settings.redis_url)
    cron: BaseProcess | None = None
    if with_cron and not burst:
        cron = multiprocessing.get_context("spawn").Process(
            target=run_cron, args=(settings,), daemon=True
        )
        cron.start()
    # SimpleWorker runs jobs in-process: these jobs are short, and forking per reaper pass
    # every few seconds would cost more than the work.
    worker = SimpleWorker([settings.rq_queue], connection=redis)
    try:
        worker.work(burst=burst, with_scheduler=True)
    finally:
        if cron is not None and cron.is_alive():
            cron.terminate()
            cron.join(5)
