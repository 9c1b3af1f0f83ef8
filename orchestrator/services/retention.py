"""Checkpoint retention: keep the store under its byte budget without losing a resume point.

1. Never deleted: each experiment's recorded checkpoint (a finished experiment's final one,
   the resume point of a queued or running one), anything newer than that of an unfinished
   experiment (uploaded, perhaps not reported yet), and the checkpoint each open attempt
   resumed from (it may still be downloading it).
2. Beyond the newest ``BATON_CHECKPOINT_KEEP`` of an experiment, the rest goes.
3. While the total is over ``BATON_CHECKPOINT_BUDGET_BYTES``, the oldest unprotected ones go,
   across experiments (oldest: written by the attempt that started first, then lowest step).

Works on any CheckpointStore (list / size_bytes / delete). Runs as an RQ job after each
recorded checkpoint and on a schedule; a Redis lock keeps two runs from overlapping.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Set
from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from orchestrator.db import after_commit, session_scope
from orchestrator.models import Attempt, Experiment
from orchestrator.runtime import Runtime
from worker.checkpoints import CheckpointRef

log = logging.getLogger(__name__)

PENDING_KEY = "baton:retention:pending"
PENDING_SECONDS = 300  # a lost job (RQ worker down) blocks new requests at most this long
LOCK_KEY = "baton:retention:lock"
LOCK_SECONDS = 3600


@dataclass(frozen=True)
class Stored:
    ref: CheckpointRef
    size: int
    written: float  # when the attempt that wrote it started (epoch seconds): the age order


@dataclass
class RetentionReport:
    checkpoints: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    deleted: list[str] = field(default_factory=list)
    over_budget: bool = False  # only protected checkpoints are left and they exceed the budget
    skipped: bool = False  # another run held the lock


def select_doomed(
    stored: Iterable[Stored], *, protected: Set[str], keep: int, budget: int
) -> list[Stored]:
    """What to delete, oldest first: beyond the newest ``keep`` per experiment, then down to
    ``budget`` bytes; never a key in ``protected``."""
    by_experiment: dict[str, list[Stored]] = defaultdict(list)
    for item in sorted(stored, key=lambda s: s.ref):
        by_experiment[item.ref.experiment_id].append(item)
    doomed: list[Stored] = []
    survivors: list[Stored] = []
    for items in by_experiment.values():
        for index, item in enumerate(items):
            newest = index >= len(items) - keep
            (survivors if newest or item.ref.key in protected else doomed).append(item)
    total = sum(item.size for item in survivors)
    for item in sorted(survivors, key=lambda s: (s.written, s.ref.step)):
        if total <= budget:
            break
        if item.ref.key not in protected:
            doomed.append(item)
            total -= item.size
    return doomed


@dataclass(frozen=True)
class _Recorded:
    key: str
    step: int
    final: bool


@dataclass
class _Facts:
    """What the database says about checkpoints, read in one short transaction."""

    recorded: dict[str, _Recorded]
    resumed: dict[str, set[int]]
    started: dict[tuple[str, int], float]

    @classmethod
    def read(cls, session: Session) -> _Facts:
        experiments = session.exec(
            select(Experiment).where(col(Experiment.checkpoint_key).is_not(None))
        ).all()
        recorded = {
            str(e.id): _Recorded(
                key=e.checkpoint_key or "", step=e.checkpoint_step or 0, final=e.status.is_final
            )
            for e in experiments
        }
        attempts = session.exec(
            select(Attempt).where(col(Attempt.experiment_id).in_([e.id for e in experiments]))
        ).all()
        resumed: dict[str, set[int]] = defaultdict(set)
        for attempt in attempts:
            if attempt.ended_at is None and attempt.resumed_from_step is not None:
                resumed[str(attempt.experiment_id)].add(attempt.resumed_from_step)
        started = {(str(a.experiment_id), a.number): a.started_at.timestamp() for a in attempts}
        return cls(recorded=recorded, resumed=resumed, started=started)

    def protects(self, ref: CheckpointRef) -> bool:
        recorded = self.recorded[ref.experiment_id]
        return (
            ref.key == recorded.key
            or (not recorded.final and ref.step >= recorded.step)
            or ref.step in self.resumed.get(ref.experiment_id, ())
        )

    def written(self, ref: CheckpointRef) -> float:
        return self.started.get((ref.experiment_id, ref.attempt), 0.0)


def apply(runtime: Runtime) -> RetentionReport:
    """One retention pass over the whole store."""
    runtime.redis.delete(PENDING_KEY)  # checkpoints recorded from now on ask for another pass
    lock = runtime.redis.lock(LOCK_KEY, timeout=LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        return RetentionReport(skipped=True)
    try:
        return _apply(runtime)
    finally:
        lock.release()


def _apply(runtime: Runtime) -> RetentionReport:
    settings = runtime.settings
    with session_scope(runtime.engine) as session:
        facts = _Facts.read(session)
    store = runtime.checkpoints
    stored = [
        Stored(ref=ref, size=store.size_bytes(ref), written=facts.written(ref))
        for experiment_id in facts.recorded
        for ref in store.list(experiment_id=experiment_id)
    ]
    protected = {s.ref.key for s in stored if facts.protects(s.ref)}
    doomed = select_doomed(
        stored,
        protected=protected,
        keep=settings.checkpoint_keep,
        budget=settings.checkpoint_budget_bytes,
    )
    for item in doomed:
        store.delete(item.ref)
        log.info("retention: deleted checkpoint %s (%s bytes)", item.ref.key, item.size)
    before = sum(s.size for s in stored)
    after = before - sum(s.size for s in doomed)
    if after > settings.checkpoint_budget_bytes:
        log.warning(
            "retention: %s bytes of protected checkpoints exceed the budget of %s bytes",
            after,
            settings.checkpoint_budget_bytes,
        )
    return RetentionReport(
        checkpoints=len(stored) - len(doomed),
        bytes_before=before,
        bytes_after=after,
        deleted=[s.ref.key for s in doomed],
        over_budget=after > settings.checkpoint_budget_bytes,
    )


def request(session: Session, runtime: Runtime) -> None:
    """Run a retention pass once this transaction commits; one pending pass covers many."""
    after_commit(session, lambda: _enqueue(runtime))


def _enqueue(runtime: Runtime) -> None:
    from orchestrator.background import tasks

    if runtime.redis.set(PENDING_KEY, "1", nx=True, ex=PENDING_SECONDS):
        runtime.queue.enqueue(tasks.apply_retention)
