"""Metric history capping (real database) and the arithmetic behind progress and charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, col, select

from orchestrator.db import make_engine
from orchestrator.migrate import upgrade
from orchestrator.models import Attempt, AttemptOutcome, Experiment, MetricSample, User
from orchestrator.services import metric_history
from orchestrator.web import charts
from orchestrator.web.stats import busy_span, hour_buckets, progress_of

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _attempt(**fields: object) -> Attempt:
    values: dict[str, object] = {
        "experiment_id": 1,
        "number": 1,
        "lease_token": "t",
        "started_at": T0,
        "heartbeat_at": T0,
    }
    values.update(fields)
    return Attempt(**values)


def test_history_keeps_the_whole_curve_within_the_cap(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metric_history, "MAX_SAMPLES", 10)
    engine = make_engine(database_url)
    upgrade(engine)
    with Session(engine) as session:
        user = User(email="u@example.com", hashed_password="x")
        session.add(user)
        session.flush()
        experiment = Experiment(name="e", kind="command", owner_id=user.id)
        session.add(experiment)
        session.flush()
        attempt = _attempt(experiment_id=experiment.id)
        session.add(attempt)
        session.flush()
        for step in range(1, 31):
            metric_history.record(session, attempt, step=step, values={"loss": 1 / step})
            metric_history.record(session, attempt, step=step, values={"loss": 1 / step})
        session.commit()
        steps = session.exec(select(MetricSample.step).order_by(col(MetricSample.id))).all()
    engine.dispose()
    assert len(steps) <= 10, "capped"
    assert steps[0] == 1 and steps[-1] == 30, "the first and the newest sample survive thinning"
    assert len(set(steps)) == len(steps), "a resent heartbeat is not a new sample"


def test_progress_rate_counts_from_the_resume_point() -> None:
    attempt = _attempt(
        resumed_from_step=100,
        progress_step=160,
        progress_total=400,
        heartbeat_at=T0 + timedelta(seconds=30),
    )
    progress = progress_of(attempt)
    assert progress.steps_per_second == pytest.approx(2.0)
    assert progress.eta_seconds == pytest.approx(120.0)
    assert progress.percent == pytest.approx(40.0)
    assert progress_of(_attempt()).steps_per_second is None


def test_busy_span_of_a_lost_attempt_ends_at_its_last_heartbeat() -> None:
    lost = _attempt(
        heartbeat_at=T0 + timedelta(minutes=5),
        ended_at=T0 + timedelta(minutes=9),
        outcome=AttemptOutcome.lost,
    )
    assert busy_span(lost) == (T0, T0 + timedelta(minutes=5))
    done = _attempt(
        heartbeat_at=T0 + timedelta(minutes=5),
        ended_at=T0 + timedelta(minutes=6),
        outcome=AttemptOutcome.succeeded,
    )
    assert busy_span(done)[1] == T0 + timedelta(minutes=6)


def test_hour_buckets_end_at_now() -> None:
    now = T0 + timedelta(minutes=20)
    buckets = hour_buckets(now, 3)
    assert buckets[0] == (T0 - timedelta(hours=2), T0 - timedelta(hours=1))
    assert buckets[-1] == (T0, now)


def test_bar_chart_scales_to_the_tallest_bar() -> None:
    chart = charts.bar_chart([charts.Bar("a", 2, 1), charts.Bar("b", 4, 4)])
    short, tall = chart.bars
    assert tall.total_y == pytest.approx(0) and short.total_y == pytest.approx(chart.height / 2)
    assert short.part_y == pytest.approx(chart.height * 3 / 4)
    assert chart.mean_share == pytest.approx(5 / 6)
