"""Prometheus metrics, served at ``/metrics``.

The control plane is several processes (API replicas, the RQ worker), so there are two kinds:

- State that every process can see is computed at scrape time from Redis and the database:
  queue depth, claims (Redis' fence counter counts every claim), attempts ended by outcome
  (``lost`` = a lease lost, ``preempted`` = a preemption), experiments by status. Any replica
  reports the same complete numbers, unaffected by which process did the work or by
  restarts; aggregate these across replicas with ``max``, not ``sum``.
- What only the handling process sees lives in in-process histograms: API latency (a
  middleware) and job durations (observed when a worker's report ends an attempt). Each
  replica reports its own share; ``sum`` them. Attempts the reaper declares lost end in the
  RQ worker, which is not scraped: they count in ``baton_attempts_ended_total`` only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy import func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.db import read_session
from orchestrator.dispatch.queue import FENCE
from orchestrator.models import Attempt, AttemptOutcome, Experiment, ExperimentStatus
from orchestrator.runtime import Runtime

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

JOB_SECONDS = Histogram(
    "baton_job_duration_seconds",
    "Wall time of attempts, from claim to the worker's final report, by kind and outcome.",
    ["kind", "outcome"],
    buckets=(1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200),
    registry=REGISTRY,
)
API_SECONDS = Histogram(
    "baton_api_request_duration_seconds",
    "API latency by route template (long-polls included: claim and log follow wait by design).",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)


def observe_attempt_end(*, kind: str, outcome: AttemptOutcome, seconds: float) -> None:
    JOB_SECONDS.labels(kind, outcome.value).observe(max(seconds, 0.0))


class StateCollector(Collector):
    """Shared state, read at scrape time (see the module docstring for why)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "baton_metrics_source_up", "Whether this scrape could read it.", labels=["source"]
        )
        for source, read in (("redis", self._redis), ("database", self._database)):
            try:
                families, ok = list(read()), 1
            except (RedisError, SQLAlchemyError) as exc:
                # The rest of the scrape (latency above all) matters most during an outage.
                log.warning("metrics: cannot read %s: %s", source, exc)
                families, ok = [], 0
            up.add_metric([source], ok)
            yield from families
        yield up

    def _redis(self) -> Iterator[Metric]:
        dispatcher = self.runtime.dispatcher
        depth = GaugeMetricFamily(
            "baton_queue_depth",
            "Experiments ready to be claimed, by capability class.",
            labels=["capability"],
        )
        for name, count in sorted(dispatcher.queue_depths().items()):
            depth.add_metric([name], count)
        fence = dispatcher.redis.get(FENCE)
        yield depth
        yield CounterMetricFamily(
            "baton_claims",
            "Leases granted since Redis was last emptied (its fence counter).",
            value=int(fence or 0),
        )

    def _database(self) -> Iterator[Metric]:
        with read_session(self.runtime.engine) as session:
            outcomes = dict(
                session.exec(
                    select(Attempt.outcome, func.count())
                    .where(col(Attempt.outcome).is_not(None))
                    .group_by(Attempt.outcome)
                ).all()
            )
            running = session.exec(
                select(func.count()).select_from(Attempt).where(col(Attempt.ended_at).is_(None))
            ).one()
            by_status = select(Experiment.status, func.count()).group_by(Experiment.status)
            statuses = dict(session.exec(by_status).all())
        ended = CounterMetricFamily(
            "baton_attempts_ended",
            "Attempts ended, by outcome (lost: its lease expired; preempted: released early).",
            labels=["outcome"],
        )
        for outcome in AttemptOutcome:
            ended.add_metric([outcome.value], outcomes.get(outcome, 0))
        yield ended
        yield GaugeMetricFamily("baton_attempts_running", "Attempts open now.", value=running)
        experiments = GaugeMetricFamily(
            "baton_experiments", "Experiments by status.", labels=["status"]
        )
        for status in ExperimentStatus:
            experiments.add_metric([status.value], statuses.get(status, 0))
        yield experiments


class LatencyMiddleware:
    """Times every HTTP request, labelled by the matched route's template (bounded cardinality)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            elapsed = time.perf_counter() - started
            API_SECONDS.labels(scope["method"], route, str(status)).observe(elapsed)


def scrape(runtime: Runtime) -> bytes:
    shared = CollectorRegistry()
    shared.register(StateCollector(runtime))
    return generate_latest(REGISTRY) + generate_latest(shared)


def install(app: FastAPI) -> None:
    """Add the latency middleware and the unauthenticated ``/metrics`` route."""
    app.add_middleware(LatencyMiddleware)

    def metrics(request: Request) -> Response:
        return Response(scrape(request.app.state.runtime), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
