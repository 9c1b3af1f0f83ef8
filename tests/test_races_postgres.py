"""Races on a real Postgres (READ COMMITTED): concurrent refreshes of one token, a cancel
racing a complete, the reaper racing a cancel. Each ends in one consistent state.

A "gate" makes the dangerous interleaving happen every time: the test holds the contended
row's lock, lets both parties read and queue behind it (in a chosen order), then lets go.
Ungated rounds race freely on top.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlmodel import select

from orchestrator.db import session_scope
from orchestrator.dispatch.queue import now_ms
from orchestrator.errors import Conflict
from orchestrator.migrate import upgrade
from orchestrator.models import (
    Attempt,
    AttemptOutcome,
    Experiment,
    ExperimentStatus,
    RefreshToken,
    User,
    WorkerToken,
)
from orchestrator.models.experiment import ExperimentCreate
from orchestrator.models.user import UserCreate
from orchestrator.models.worker import WorkerRegister
from orchestrator.runtime import Runtime
from orchestrator.security import encode_token
from orchestrator.services import accounts, experiments, leases, maintenance
from orchestrator.services.leases import CompleteIn, Grant
from tests.support.api import make_settings
from tests.support.services import postgres_service
from tests.support.stack import Stack, stack_env, wait_until

GATED_ROUNDS = 4  # per order
FREE_ROUNDS = 6


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A database of this test's own on the local server, migrated."""
    with postgres_service() as svc:
        if svc is None:
            pytest.skip("no PostgreSQL server on 127.0.0.1:5432 and none could be started")
        yield svc.url


@pytest.fixture
def runtime(pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[Runtime]:
    settings = make_settings(database_url=pg_url, redis_url=redis_url, data_dir=tmp_path / "data")
    rt = Runtime.from_settings(settings)
    upgrade(rt.engine)
    yield rt
    rt.close()


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


class Gate:
    """Holds one row's lock; ``queue`` starts a party and waits until it blocks on the lock."""

    def __init__(self, url: str, table: str, key: str, value: object) -> None:
        self._conn = psycopg.connect(_libpq(url))
        self._watch = psycopg.connect(_libpq(url), autocommit=True)
        self._conn.execute(f'SELECT 1 FROM "{table}" WHERE {key} = %s FOR UPDATE', (value,))
        self.threads: list[threading.Thread] = []

    def _waiting(self) -> int:
        row = self._watch.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
        return int(row[0]) if row else 0

    def queue(self, party: Callable[[], None]) -> None:
        thread = threading.Thread(target=party)
        thread.start()
        self.threads.append(thread)
        wanted = len(self.threads)
        wait_until(lambda: self._waiting() >= wanted, timeout=20, what=f"{wanted} parties queued")

    def open(self) -> None:
        self._conn.rollback()
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive()
        self._conn.close()
        self._watch.close()


def _free_race(*parties: Callable[[], None]) -> None:
    barrier = threading.Barrier(len(parties))

    def run(party: Callable[[], None]) -> Callable[[], None]:
        def go() -> None:
            barrier.wait()
            party()

        return go

    threads = [threading.Thread(target=run(p)) for p in parties]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()


# --- refresh-token rotation -----------------------------------------------------------------


def _mint_refresh(runtime: Runtime, user_id: int) -> str:
    """A refresh token as a login issues it (its own family)."""
    token, claims = encode_token(
        runtime.settings,
        subject=user_id,
        type="refresh",
        lifetime=timedelta(days=1),
        family=f"race-{time.monotonic_ns()}",
    )
    with session_scope(runtime.engine) as session:
        assert claims.family is not None
        session.add(
            RefreshToken(
                jti=claims.jti,
                family_id=claims.family,
                user_id=user_id,
                expires_at=claims.expires_at,
            )
        )
    return token


def test_two_concurrent_refreshes_of_one_token_exactly_one_wins(
    runtime: Runtime, pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    user_id = _user(runtime).id
    assert user_id is not None
    stack = Stack(
        env=stack_env(database_url=pg_url, redis_url=redis_url, data_dir=tmp_path / "data"),
        root=tmp_path,
    )
    stack.start_api()
    try:
        with httpx.Client(base_url=stack.url, timeout=60) as http:

            def round_(gated: bool) -> None:
                token = _mint_refresh(runtime, user_id)
                replies: list[httpx.Response] = []

                def refresh() -> None:
                    replies.append(http.post("/auth/refresh", json={"refresh_token": token}))

                if gated:
                    jti = _jti(runtime, token)
                    gate = Gate(pg_url, "refreshtoken", "jti", jti)
                    gate.queue(refresh)
                    gate.queue(refresh)
                    gate.open()
                else:
                    _free_race(refresh, refresh)
                codes = sorted(r.status_code for r in replies)
                assert codes == [200, 401], [r.text for r in replies]
                loser = next(r for r in replies if r.status_code == 401)
                assert "reuse" in loser.json()["detail"]
                # The loser counts as reuse: the whole family is revoked, the winner's new
                # token included.
                winner = next(r for r in replies if r.status_code == 200)
                again = http.post(
                    "/auth/refresh", json={"refresh_token": winner.json()["refresh_token"]}
                )
                assert again.status_code == 401, again.text

            for _ in range(GATED_ROUNDS):
                round_(gated=True)
            for _ in range(FREE_ROUNDS):
                round_(gated=False)
    finally:
        stack.close()


def _jti(runtime: Runtime, token: str) -> str:
    from orchestrator.security import decode_token

    return decode_token(runtime.settings, token, expected="refresh").jti


# --- cancel racing complete, reaper racing cancel -------------------------------------------


@dataclass
class Running:
    experiment_id: int
    grant: Grant


@dataclass
class Fleet:
    user: User
    token: WorkerToken
    worker_id: int


def _user(runtime: Runtime) -> User:
    with session_scope(runtime.engine) as session:
        existing = session.exec(select(User)).first()
        if existing is not None:
            return existing
        return accounts.create_user(
            session, data=UserCreate(email="racer@example.com", password="password123")
        )


def _fleet(runtime: Runtime) -> Fleet:
    user = _user(runtime)
    with session_scope(runtime.engine) as session:
        token, _ = accounts.create_worker_token(session, name="racer", owner=user)
        session.flush()
        worker = leases.register_worker(session, token=token, data=WorkerRegister(name="w"))
        assert worker.id is not None
        return Fleet(user=user, token=token, worker_id=worker.id)


def _running(runtime: Runtime, fleet: Fleet) -> Running:
    with session_scope(runtime.engine) as session:
        experiment = experiments.create(
            session,
            runtime,
            owner=fleet.user,
            data=ExperimentCreate(name="race", kind="command", config={"command": "true"}),
        )
        experiment_id = experiment.id
    assert experiment_id is not None
    grant = leases.claim_once(runtime, token=fleet.token, worker_id=fleet.worker_id)
    assert grant is not None and grant.experiment_id == experiment_id
    return Running(experiment_id=experiment_id, grant=grant)


def _final(runtime: Runtime, experiment_id: int) -> tuple[Experiment, list[Attempt]]:
    with session_scope(runtime.engine) as session:
        experiment = session.get(Experiment, experiment_id)
        assert experiment is not None
        attempts = list(session.exec(select(Attempt).where(Attempt.experiment_id == experiment_id)))
        return experiment, attempts


def _assert_redis_settled(runtime: Runtime, experiment_id: int) -> None:
    """A finished experiment holds no lease and sits in no ready set."""
    assert experiment_id not in runtime.dispatcher.ready_members()
    assert experiment_id not in runtime.dispatcher.leased_members()


def test_cancel_racing_complete_ends_in_one_consistent_state(runtime: Runtime, pg_url: str) -> None:
    fleet = _fleet(runtime)

    def round_(order: str | None) -> str:
        running = _running(runtime, fleet)
        outcome: dict[str, Any] = {}

        def cancel() -> None:
            try:
                with session_scope(runtime.engine) as session:
                    experiments.cancel(
                        session, runtime, user=fleet.user, experiment_id=running.experiment_id
                    )
                outcome["cancel"] = "canceled"
            except Conflict as exc:
                outcome["cancel"] = exc.message

        def complete() -> None:
            data = CompleteIn(lease_token=running.grant.lease_token, result={"answer": 42})
            with session_scope(runtime.engine) as session:
                experiment = leases.complete(session, runtime, token=fleet.token, data=data)
                outcome["complete"] = str(experiment.status)

        if order is None:
            _free_race(cancel, complete)
        else:
            gate = Gate(pg_url, "experiment", "id", running.experiment_id)
            first, second = (cancel, complete) if order == "cancel" else (complete, cancel)
            gate.queue(first)
            gate.queue(second)
            gate.open()

        experiment, attempts = _final(runtime, running.experiment_id)
        assert [a.ended_at is not None for a in attempts] == [True]
        _assert_redis_settled(runtime, running.experiment_id)
        if experiment.status == ExperimentStatus.succeeded:
            # The complete won: the cancel was refused, nothing of it was written.
            assert "already succeeded" in outcome["cancel"], outcome
            assert outcome["complete"] == "succeeded"
            assert experiment.result == {"answer": 42}
            assert not experiment.cancel_requested and experiment.error is None
            assert attempts[0].outcome == AttemptOutcome.succeeded
            return "complete"
        # The cancel won: the late complete closed the attempt but changed nothing else.
        assert experiment.status == ExperimentStatus.canceled, experiment
        assert outcome == {"cancel": "canceled", "complete": "canceled"}, outcome
        assert experiment.result is None and experiment.cancel_requested
        return "cancel"

    for _ in range(GATED_ROUNDS):
        assert round_("cancel") == "cancel"
        assert round_("complete") == "complete"
    for _ in range(FREE_ROUNDS):
        round_(None)


def test_reaper_racing_cancel_never_requeues_a_canceled_experiment(
    runtime: Runtime, pg_url: str
) -> None:
    fleet = _fleet(runtime)
    lease_ms = int(runtime.settings.lease_seconds * 1000)

    def round_(order: str | None) -> None:
        running = _running(runtime, fleet)
        experiment_id = running.experiment_id
        # The worker went silent long ago while an API was up: the lease is expired.
        long_ago = now_ms() - 100 * lease_ms
        with session_scope(runtime.engine) as session:
            attempt = session.exec(
                select(Attempt).where(Attempt.experiment_id == experiment_id)
            ).one()
            attempt.heartbeat_at = attempt.heartbeat_at - timedelta(milliseconds=100 * lease_ms)
            session.add(attempt)
        runtime.dispatcher.extend(
            experiment_id=experiment_id,
            token=running.grant.lease_token,
            worker_id=fleet.worker_id,
            expires_ms=long_ago,
        )
        runtime.dispatcher.mark_api_alive(instance="races", started_ms=long_ago, ttl_ms=60_000)
        outcome: dict[str, Any] = {}

        def reap() -> None:
            outcome["reaped"] = maintenance.reap(runtime)

        def cancel() -> None:
            with session_scope(runtime.engine) as session:
                experiments.cancel(session, runtime, user=fleet.user, experiment_id=experiment_id)
            outcome["cancel"] = "canceled"

        if order is None:
            _free_race(reap, cancel)
        else:
            gate = Gate(pg_url, "experiment", "id", experiment_id)
            first, second = (reap, cancel) if order == "reaper" else (cancel, reap)
            gate.queue(first)
            gate.queue(second)
            gate.open()

        experiment, attempts = _final(runtime, experiment_id)
        assert outcome == {"reaped": 1, "cancel": "canceled"}, outcome
        # Whichever went first: canceled, the silent attempt lost, nothing queued again.
        assert experiment.status == ExperimentStatus.canceled, experiment
        assert [a.outcome for a in attempts] == [AttemptOutcome.lost]
        _assert_redis_settled(runtime, experiment_id)
        assert leases.claim_once(runtime, token=fleet.token, worker_id=fleet.worker_id) is None

    for _ in range(GATED_ROUNDS):
        round_("reaper")
        round_("cancel")
    for _ in range(FREE_ROUNDS):
        round_(None)
