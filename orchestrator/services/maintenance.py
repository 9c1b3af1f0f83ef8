"""Periodic repair: the reaper turns expired leases into lost attempts; reconcile rebuilds
Redis from the database (after a Redis restart or FLUSHALL, or a crash between the two)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from sqlmodel import col, select

from orchestrator.db import after_commit, read_session, session_scope
from orchestrator.dispatch.queue import now_ms
from orchestrator.models import Attempt, AttemptOutcome, Experiment, ExperimentStatus
from orchestrator.presence import FRESH_MS
from orchestrator.runtime import Runtime
from orchestrator.services import lifecycle

log = logging.getLogger(__name__)


def _ms(dt: object) -> int:
    return int(dt.timestamp() * 1000)  # type: ignore[attr-defined]


def reap(runtime: Runtime) -> int:
    """Mark attempts whose lease expired as lost; returns how many."""
    up_since = runtime.dispatcher.api_up_since(fresh_ms=FRESH_MS)
    if up_since is None:
        log.info("reaper: no API instance is up, so workers cannot heartbeat; not reaping")
        return 0
    lease_ms = int(runtime.settings.lease_seconds * 1000)
    now = now_ms()
    lost = 0
    for experiment_id in runtime.dispatcher.expired(at_ms=now):
        with session_scope(runtime.engine) as session:
            # Locked before anything is read: a cancel or a report committed meanwhile is seen.
            experiment = lifecycle.locked_experiment(session, experiment_id)
            attempt = lifecycle.open_attempt(session, experiment_id) if experiment else None
            if experiment is None or attempt is None:
                token = runtime.dispatcher.lease_token(experiment_id=experiment_id)
                if token is not None:
                    runtime.dispatcher.end(experiment_id=experiment_id, token=token)
                continue
            # An API outage is not the worker's fault: count silence only while an API was up.
            last_sign = max(_ms(attempt.heartbeat_at), up_since)
            if now - last_sign <= lease_ms:
                token, worker_id = attempt.lease_token, attempt.worker_id or 0
                expires = last_sign + lease_ms
                after_commit(
                    session,
                    partial(
                        runtime.dispatcher.extend,
                        experiment_id=experiment_id,
                        token=token,
                        worker_id=worker_id,
                        expires_ms=expires,
                    ),
                )
                continue
            silent = (now - _ms(attempt.heartbeat_at)) / 1000
            log.warning(
                "reaper: experiment %s attempt %s lost (no heartbeat for %.0fs)",
                experiment_id,
                attempt.number,
                silent,
            )
            lifecycle.end_attempt(
                session,
                runtime,
                experiment=experiment,
                attempt=attempt,
                outcome=AttemptOutcome.lost,
                reason=f"lease expired: worker {attempt.worker_id} silent for {silent:.0f}s",
            )
            lost += 1
    return lost


@dataclass
class ReconcileReport:
    requeued: int = 0
    leases_restored: int = 0
    stale_removed: int = 0
    waiting_settled: int = 0
    legacy_sets_dropped: int = 0


def settle_waiting(runtime: Runtime) -> int:
    """Waiting experiments whose prerequisites already ended (a transition that was missed,
    e.g. a crash between two commits) are queued or canceled now."""
    settled = 0
    with session_scope(runtime.engine) as session:
        waiting = session.exec(
            select(Experiment).where(Experiment.status == ExperimentStatus.waiting)
        ).all()
        for experiment in waiting:
            lifecycle.start(session, runtime, experiment)
            settled += experiment.status != ExperimentStatus.waiting
    return settled


def reconcile(runtime: Runtime) -> ReconcileReport:
    """Make Redis agree with the database. Reads the database first, then Redis, so a claim
    racing with this shows up as leased, never as missing."""
    report = ReconcileReport(
        waiting_settled=settle_waiting(runtime),
        legacy_sets_dropped=runtime.dispatcher.drop_legacy_ready_sets(),
    )
    with read_session(runtime.engine) as session:
        queued = session.exec(
            select(Experiment).where(Experiment.status == ExperimentStatus.queued)
        ).all()
        open_attempts = session.exec(select(Attempt).where(col(Attempt.ended_at).is_(None))).all()
        queued_ids = {e.id for e in queued}
    dispatcher = runtime.dispatcher
    ready = dispatcher.ready_members()
    leased = dispatcher.leased_members()
    for experiment in queued:
        assert experiment.id is not None
        if experiment.id not in ready and experiment.id not in leased:
            lifecycle.make_ready(runtime, experiment)()
            report.requeued += 1
    lease_ms = int(runtime.settings.lease_seconds * 1000)
    for attempt in open_attempts:
        if attempt.experiment_id not in leased:
            # A fresh full lease: the worker gets its chance to heartbeat against the new Redis.
            dispatcher.extend(
                experiment_id=attempt.experiment_id,
                token=attempt.lease_token,
                worker_id=attempt.worker_id or 0,
                expires_ms=now_ms() + lease_ms,
            )
            report.leases_restored += 1
    if ready:
        with read_session(runtime.engine) as session:
            statuses = dict(
                session.exec(
                    select(Experiment.id, Experiment.status).where(
                        col(Experiment.id).in_(list(ready))
                    )
                ).all()
            )
        for experiment_id, ready_queue in ready.items():
            if experiment_id in queued_ids:
                continue
            if statuses.get(experiment_id) != ExperimentStatus.queued:
                dispatcher.remove_from(experiment_id=experiment_id, queue=ready_queue)
                report.stale_removed += 1
    if report != ReconcileReport():
        log.info("reconcile: %s", report)
    return report
