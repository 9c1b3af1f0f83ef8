"""The stop margin before a known session end: measured from the running job, bounded, and
acted on at its instant rather than the next tick."""

from __future__ import annotations

import threading
import time

import pytest

from worker.__main__ import parse_args
from worker.deadline import Session, SessionWatch, session_options
from worker.margin import MarginPolicy, StopTimer


def measured(step: float, write: float, upload: float) -> StopTimer:
    """A timer that saw two steps ``step`` apart, a checkpoint ``write`` after, an upload."""
    timer = StopTimer()
    timer.progress(1, at=100.0)
    timer.progress(2, at=100.0 + step)
    timer.checkpoint(at=100.0 + step + write)
    timer.upload(upload)
    return timer


def test_configured_margin_until_a_stop_is_measured() -> None:
    policy = MarginPolicy(configured=600, floor=60, ceiling=1800, safety=3)
    assert policy.margin(None) == 600
    assert policy.margin(50) == 150  # 3 x a 50 s stop
    assert policy.margin(5) == 60  # never under the floor
    assert policy.margin(1000) == 1800  # nor over the ceiling


def test_a_stop_is_a_step_a_checkpoint_written_and_one_uploaded() -> None:
    assert measured(step=2.0, write=5.0, upload=3.0).stop_seconds() == pytest.approx(10.0)


@pytest.mark.parametrize("missing", ["step", "write", "upload"])
def test_nothing_is_measured_until_each_part_was_seen(missing: str) -> None:
    timer = StopTimer()
    if missing != "step":
        timer.progress(1, at=0.0)
        timer.progress(2, at=1.0)
    else:
        timer.progress(1, at=0.0)
    if missing != "write":
        timer.checkpoint(at=1.5)
    if missing != "upload":
        timer.upload(0.5)
    assert timer.stop_seconds() is None


def test_the_slowest_recent_counts_and_repeats_of_a_step_do_not() -> None:
    timer = measured(step=1.0, write=4.0, upload=2.0)  # its last message at 105
    timer.progress(3, at=106.0)
    timer.checkpoint(at=106.1)  # a second checkpoint, written and uploaded fast
    timer.upload(0.1)
    timer.progress(3, at=160.0)  # the same step again (metrics only): not a step's length
    timer.progress(4, at=160.5)
    assert timer.stop_seconds() == pytest.approx(1.0 + 4.0 + 2.0)


@pytest.mark.parametrize(("floor", "ceiling", "safety"), [(100, 50, 3), (-1, 50, 3), (1, 50, 0.5)])
def test_contradicting_margins_are_refused(floor: float, ceiling: float, safety: float) -> None:
    with pytest.raises(ValueError):
        MarginPolicy(configured=10, floor=floor, ceiling=ceiling, safety=safety)


CLI = ["--api", "http://127.0.0.1:1", "--token", "t"]


def test_contradicting_margin_settings_are_one_cli_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args([*CLI, "--checkpoint-margin-min", "90", "--checkpoint-margin-max", "30"])
    assert exit_info.value.code == 2
    assert "margin floor 90s is above its ceiling 30s" in capsys.readouterr().err


def test_settings_reach_the_session_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_CHECKPOINT_MARGIN_MIN", "5")
    monkeypatch.setenv("BATON_CHECKPOINT_MARGIN_MAX", "50")
    monkeypatch.setenv("BATON_CHECKPOINT_MARGIN_SAFETY", "2")
    options = session_options(parse_args(CLI))
    assert (options.margin_min, options.margin_max, options.margin_safety) == (5, 50, 2)


def test_the_running_jobs_measured_stop_moves_the_session_end() -> None:
    session = Session(deadline=1000.0, margin=600, margin_min=10, margin_max=900)
    assert session.end_at == 400.0 and session.stop_at == 400.0
    session.stops = measured(step=2.0, write=5.0, upload=3.0)
    assert session.end_at == pytest.approx(970.0)  # 3 x 10 s
    assert session.stop_at == 400.0, "new work is still not claimed past the configured margin"
    session.stops = None  # the job ended
    assert session.end_at == 400.0


def test_watch_fires_at_the_measured_instant_not_the_next_tick() -> None:
    fired: list[float] = []
    stopped = threading.Event()
    # A margin of 0.3 s after a measured 0.1 s stop; the deadline is not on a tick boundary.
    session = Session(deadline=time.time() + 1.37, margin=5.0, margin_min=0.3, margin_max=5.0)
    session.stops = measured(step=0.05, write=0.03, upload=0.02)
    due = session.end_at
    assert due is not None
    SessionWatch(session, on_end=lambda _: fired.append(time.time()), stopped=stopped).start()
    while not fired and time.time() < due + 2:
        time.sleep(0.01)
    stopped.set()
    assert len(fired) == 1
    # The 0.5 s tick would be up to 0.5 s late; a timer at the instant is not (a loaded box
    # may still wake a thread late by a little).
    assert due <= fired[0] < due + 0.2
