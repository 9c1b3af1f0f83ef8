"""The control plane's RQ worker, with RQ's cron scheduler enqueueing the periodic jobs and RQ's
scheduler enqueueing delayed ones (email retries), both as threads of the one process."""

from __future__ import annotations

import logging
import threading

from redis import Redis
from rq import SimpleWorker
from rq.cron import CronScheduler
from rq.scheduler import RQScheduler

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


def run_scheduler(settings: Settings, stop: threading.Event) -> None:
    """Blocks until ``stop``: move due delayed jobs (an email's next try) onto the queue.

    ``Worker.work(with_scheduler=True)`` forks a process for this, which keeps a copy of the
    control plane resident (~90 MB of RSS on a 1 GB VM) to wake once a second. This is the loop
    of ``RQScheduler.work`` minus its signal handlers (main thread only)."""
    scheduler = RQScheduler([settings.rq_queue], connection=connect_redis(settings.redis_url))
    scheduler.register_birth()
    try:
        while not stop.is_set():
            try:
                if scheduler.should_reacquire_locks:
                    scheduler.acquire_locks()
                scheduler.heartbeat()
                scheduler.enqueue_scheduled_jobs()
            except Exception:
                log.exception("scheduler: enqueueing delayed jobs failed; retrying")
            stop.wait(scheduler.interval)
    finally:
        scheduler.stop()


def run_worker(settings: Settings, *, burst: bool = False, with_cron: bool = True) -> None:
    redis: Redis = connect_redis(settings.redis_url)
    stop = threading.Event()
    timers: list[threading.Thread] = []
    if not burst:
        loops = [run_scheduler, run_cron] if with_cron else [run_scheduler]
        for loop in loops:
            thread = threading.Thread(target=loop, args=(settings, stop), daemon=True)
            thread.start()
            timers.append(thread)
    # SimpleWorker runs jobs in-process: these jobs are short, and forking per reaper pass
    # every few seconds would cost more than the work.
    worker = SimpleWorker([settings.rq_queue], connection=redis)
    try:
        # A burst run (tests) moves due delayed jobs itself, as RQ's burst mode does.
        worker.work(burst=burst, with_scheduler=burst)
    finally:
        stop.set()
        for thread in timers:
            thread.join(5)
