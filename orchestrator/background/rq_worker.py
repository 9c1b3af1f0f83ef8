"""The control plane's RQ worker, with RQ's cron scheduler enqueueing the periodic jobs."""

from __future__ import annotations

import logging
import threading

from redis import Redis
from rq import SimpleWorker
from rq.cron import CronScheduler

from orchestrator.background import platforms, tasks
from orchestrator.platforms import kaggle
from orchestrator.runtime import connect_redis
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

CRON_RETRY_SECONDS = 5.0


def run_cron(settings: Settings, stop: threading.Event) -> None:
    """Blocks until ``stop``: enqueue the periodic jobs when they are due.

    A thread of the RQ worker process, not a process of its own: a second Python with the
    control plane imported costs ~90 MB of a 1 GB VM to sleep between enqueues. This is the
    loop of ``CronScheduler.start`` minus its signal handlers (main thread only).
    """
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
    scheduler.register_birth()
    try:
        while not stop.is_set():
            try:
                if scheduler.enqueue_jobs():
                    scheduler.save()
                scheduler.heartbeat()
                delay = scheduler.calculate_sleep_interval()
            except Exception:
                # A dead cron thread would mean no reaper ever again: log and go on.
                log.exception("cron: enqueueing the periodic jobs failed; retrying")
                delay = CRON_RETRY_SECONDS
            stop.wait(delay)
    finally:
        scheduler.register_death()


def run_worker(settings: Settings, *, burst: bool = False, with_cron: bool = True) -> None:
    redis: Redis = connect_redis(settings.redis_url)
    stop = threading.Event()
    cron: threading.Thread | None = None
    if with_cron and not burst:
        cron = threading.Thread(target=run_cron, args=(settings, stop), name="baton-cron")
        cron.daemon = True
        cron.start()
    # SimpleWorker runs jobs in-process: these jobs are short, and forking per reaper pass
    # every few seconds would cost more than the work.
    worker = SimpleWorker([settings.rq_queue], connection=redis)
    try:
        worker.work(burst=burst, with_scheduler=True)
    finally:
        stop.set()
        if cron is not None:
            cron.join(5)
