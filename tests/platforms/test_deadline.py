"""Session deadlines: per-platform limits, overrides, and the watcher that ends a session."""

from __future__ import annotations

import threading
import time

import pytest

from tests.platforms import standins
from worker.__main__ import parse_args
from worker.deadline import (
    Session,
    SessionOptions,
    SessionWatch,
    parse_when,
    plan,
    session_options,
)
from worker.platforms import Detected

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HOUR = 3600


def test_parse_when() -> None:
    assert parse_when("1767225600") == START
    assert parse_when("2026-01-01T00:00:00Z") == START
    assert parse_when("2026-01-01T01:00:00+01:00") == START
    assert parse_when("2026-01-01T00:00:00") == START  # naive means UTC


@pytest.mark.parametrize(
    ("platform", "hours"), [("kaggle", 9), ("colab", 12), ("paperspace", 6), ("studiolab", 4)]
)
def test_platform_limits_count_from_the_session_start(platform: str, hours: float) -> None:
    session = plan(
        platform=platform, detected=Detected(platform, START), imds_url="", options=SessionOptions()
    )
    assert session.deadline == START + hours * HOUR
    assert session.registration() == {
        "session_started_at": "2026-01-01T00:00:00+00:00",
        "session_deadline": f"2026-01-01T{hours:02d}:00:00+00:00",
    }


def test_overrides() -> None:
    detected = Detected("kaggle", START)
    hours = SessionOptions(session_hours=12)
    assert plan(platform="kaggle", detected=detected, imds_url="", options=hours).deadline == (
        START + 12 * HOUR
    )
    start = SessionOptions(session_start=START + HOUR)
    assert plan(platform="kaggle", detected=detected, imds_url="", options=start).deadline == (
        START + 10 * HOUR
    )
    explicit = SessionOptions(deadline=START + 5, session_hours=12)
    assert plan(platform="kaggle", detected=detected, imds_url="", options=explicit).deadline == (
        START + 5
    )


def test_no_known_end_on_plain_machines() -> None:
    for platform in ("local", "mac", "ec2"):
        session = plan(
            platform=platform,
            detected=Detected(platform, START),
            imds_url="",
            options=SessionOptions(),
        )
        assert session.deadline is None and not session.closing()
        assert session.claim_wait(30) == 30


def test_claims_stop_a_margin_before_the_deadline() -> None:
    now = time.time()
    session = Session(deadline=now + 100, margin=60)
    assert not session.closing(now) and session.closing(now + 40)
    assert 39 <= session.claim_wait(60) <= 40  # the long-poll ends by then
    assert Session(deadline=now + 30, margin=60).claim_wait(30) == 0


def test_idle_exit() -> None:
    assert not Session().idle_too_long()
    assert Session(idle_exit=10, last_work=time.time() - 11).idle_too_long()
    assert not Session(idle_exit=10, last_work=time.time() - 5).idle_too_long()


def _watch(session: Session) -> tuple[list[str], threading.Event]:
    reasons: list[str] = []
    stopped = threading.Event()
    SessionWatch(session, on_end=reasons.append, stopped=stopped).start()
    return reasons, stopped


def test_watch_ends_the_session_at_deadline_minus_margin() -> None:
    reasons, stopped = _watch(Session(deadline=time.time() + 2.0, margin=1.0))
    time.sleep(0.6)
    assert reasons == []
    deadline = time.monotonic() + 3
    while not reasons and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(reasons) == 1 and "session deadline" in reasons[0]
    stopped.set()


def test_watch_ends_the_session_on_a_spot_notice() -> None:
    imds = standins.Imds()
    with standins.serve(imds) as url:
        detected = Detected("ec2", None, {"lifecycle": "spot"})
        options = SessionOptions(spot_poll_seconds=0.2)
        session = plan(platform="ec2", detected=detected, imds_url=url, options=options)
        assert session.spot is not None and session.deadline is None
        reasons, stopped = _watch(session)
        time.sleep(1.4)  # the watcher ticks every 0.5 s
        assert reasons == [] and imds.notice_reads >= 2
        imds.action = {"action": "terminate", "time": "2030-01-01T00:02:00Z"}
        deadline = time.monotonic() + 3
        while not reasons and time.monotonic() < deadline:
            time.sleep(0.05)
        stopped.set()
    assert reasons == ["EC2 spot interruption notice: terminate at 2030-01-01T00:02:00Z"]


def test_deadline_awareness_off_knows_no_end() -> None:
    """The lease-expiry-only baseline: no deadline, no spot notice, even where one is known."""
    options = SessionOptions(deadline=START + 5, session_hours=12, aware=False)
    session = plan(
        platform="kaggle", detected=Detected("kaggle", START), imds_url="", options=options
    )
    assert session.deadline is None and session.spot is None and not session.closing(START + 10)
    assert session.registration()["session_deadline"] is None
    spot = Detected("ec2", START, {"lifecycle": "spot"})
    off = plan(platform="ec2", detected=spot, imds_url="http://x", options=options)
    assert off.spot is None


@pytest.mark.parametrize(("text", "aware"), [("false", False), ("0", False), ("true", True)])
def test_deadline_awareness_setting(text: str, aware: bool) -> None:
    args = parse_args(["--api", "http://cp", "--token", "t", "--deadline-awareness", text])
    assert session_options(args).aware is aware


def test_deadline_awareness_bad_value_is_one_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_DEADLINE_AWARENESS", "maybe")
    with pytest.raises(SystemExit):
        parse_args(["--api", "http://cp", "--token", "t"])
    assert "expected true or false, not 'maybe'" in capsys.readouterr().err
