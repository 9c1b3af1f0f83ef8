"""Known session ends: a platform's session limit counted from the session's start, an explicit
deadline, or an EC2 spot interruption notice.

``margin`` seconds before the deadline the agent stops claiming work; a margin before it
(worker/margin.py: what the running job's stops are measured to take, the configured margin
until then), or at once on a spot notice, it asks the running job to checkpoint, uploads,
releases the lease as ``preempted`` and exits, so the next worker resumes with nothing lost
(worker/agent.py does that part).
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.margin import (
    DEFAULT_MARGIN_MAX_SECONDS,
    DEFAULT_MARGIN_MIN_SECONDS,
    DEFAULT_MARGIN_SAFETY,
    MarginPolicy,
    StopTimer,
)
from worker.platforms import Detected, Probe, detect
from worker.platforms.ec2 import SpotNotice
from worker.system import describe_host

log = logging.getLogger(__name__)

# Free-tier session limits, in hours; override with --session-hours or --deadline.
SESSION_HOURS: dict[str, float] = {
    "kaggle": 9.0,  # GPU sessions end after 9 to 12 h: plan for the early end
    "colab": 12.0,
    "paperspace": 6.0,  # free machines
    "studiolab": 4.0,  # GPU runtime
}
DEFAULT_MARGIN_SECONDS = 600.0
DEFAULT_SPOT_POLL_SECONDS = 5.0  # what AWS suggests; the notice comes about 2 minutes ahead
TICK_SECONDS = 0.5


def parse_when(text: str) -> float:
    """Unix time from ``1767225600`` or ISO 8601 (``2026-01-01T00:00:00Z``; naive means UTC)."""
    try:
        return float(text)
    except ValueError:
        pass
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat()


@dataclass(frozen=True)
class SessionOptions:
    deadline: float | None = None  # wins over everything else
    session_start: float | None = None  # instead of the detected start
    session_hours: float | None = None  # instead of the platform's default limit
    checkpoint_margin: float = DEFAULT_MARGIN_SECONDS
    margin_min: float = DEFAULT_MARGIN_MIN_SECONDS
    margin_max: float = DEFAULT_MARGIN_MAX_SECONDS
    margin_safety: float = DEFAULT_MARGIN_SAFETY
    imds_url: str | None = None
    spot_poll_seconds: float = DEFAULT_SPOT_POLL_SECONDS
    idle_exit: float | None = None  # exit after this long without work
    # False: no deadline and no spot notice, so a session's end is found by lease expiry only
    # (how SkyPilot or W&B Launch recover); a baseline for benchmarks, not for users.
    aware: bool = True


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def add_session_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    group = parser.add_argument_group("session end (from the platform's limit when omitted)")
    group.add_argument(
        "--deadline",
        type=parse_when,
        default=env.get("BATON_DEADLINE"),
        help="when this session ends: ISO 8601 or Unix time (env BATON_DEADLINE)",
    )
    group.add_argument(
        "--session-start",
        type=parse_when,
        default=env.get("BATON_SESSION_START"),
        help="when this session began, if not when PID 1 started (env BATON_SESSION_START)",
    )
    group.add_argument(
        "--session-hours",
        type=float,
        default=env.get("BATON_SESSION_HOURS"),
        help="session limit instead of the platform's default "
        + ", ".join(f"{k} {v:g} h" for k, v in SESSION_HOURS.items()),
    )
    group.add_argument(
        "--checkpoint-margin",
        type=float,
        default=env.get("BATON_CHECKPOINT_MARGIN", DEFAULT_MARGIN_SECONDS),
        help="seconds before the deadline to stop claiming work, and to stop the running job "
        "until its stops are measured (env BATON_CHECKPOINT_MARGIN)",
    )
    group.add_argument(
        "--checkpoint-margin-min",
        type=float,
        default=env.get("BATON_CHECKPOINT_MARGIN_MIN", DEFAULT_MARGIN_MIN_SECONDS),
        help="the least margin kept once a job's stops are measured (env "
        "BATON_CHECKPOINT_MARGIN_MIN)",
    )
    group.add_argument(
        "--checkpoint-margin-max",
        type=float,
        default=env.get("BATON_CHECKPOINT_MARGIN_MAX", DEFAULT_MARGIN_MAX_SECONDS),
        help="the most margin kept however slow a job's stops are measured (env "
        "BATON_CHECKPOINT_MARGIN_MAX)",
    )
    group.add_argument(
        "--checkpoint-margin-safety",
        type=float,
        default=env.get("BATON_CHECKPOINT_MARGIN_SAFETY", DEFAULT_MARGIN_SAFETY),
        help="the margin is this many times a measured stop (env BATON_CHECKPOINT_MARGIN_SAFETY)",
    )
    group.add_argument(
        "--idle-exit",
        type=float,
        default=env.get("BATON_IDLE_EXIT"),
        help="exit after this many seconds without work (a launched session stops spending quota)",
    )
    group.add_argument(
        "--deadline-awareness",
        type=_flag,
        # A string default goes through ``type`` too: a bad env value is one clear CLI error.
        default=env.get("BATON_DEADLINE_AWARENESS", "true"),
        help="false: ignore session deadlines and spot notices; a session's end is then found "
        "only when its lease expires (env BATON_DEADLINE_AWARENESS)",
    )
    group.add_argument("--imds-url", default=None, help="EC2 instance metadata service URL")
    group.add_argument(
        "--spot-poll",
        type=float,
        default=DEFAULT_SPOT_POLL_SECONDS,
        help="seconds between spot notice checks",
    )


def session_options(args: argparse.Namespace) -> SessionOptions:
    """Raises ValueError naming the problem for margins that contradict each other."""
    margins = MarginPolicy(
        configured=args.checkpoint_margin,
        floor=args.checkpoint_margin_min,
        ceiling=args.checkpoint_margin_max,
        safety=args.checkpoint_margin_safety,
    )
    return SessionOptions(
        deadline=args.deadline,
        session_start=args.session_start,
        session_hours=args.session_hours,
        checkpoint_margin=margins.configured,
        margin_min=margins.floor,
        margin_max=margins.ceiling,
        margin_safety=margins.safety,
        imds_url=args.imds_url,
        spot_poll_seconds=args.spot_poll,
        idle_exit=args.idle_exit,
        aware=args.deadline_awareness,
    )


@dataclass
class Session:
    platform: str = "local"
    started_at: float | None = None
    deadline: float | None = None
    margin: float = DEFAULT_MARGIN_SECONDS
    margin_min: float = DEFAULT_MARGIN_MIN_SECONDS
    margin_max: float = DEFAULT_MARGIN_MAX_SECONDS
    margin_safety: float = DEFAULT_MARGIN_SAFETY
    stops: StopTimer | None = None  # the running job's, while there is one (worker/agent.py)
    spot: SpotNotice | None = None
    spot_poll_seconds: float = DEFAULT_SPOT_POLL_SECONDS
    idle_exit: float | None = None
    last_work: float = field(default_factory=time.time)  # the agent moves it after each job

    @property
    def stop_at(self) -> float | None:
        """From here on, new work could not reach a checkpoint before the deadline."""
        return None if self.deadline is None else self.deadline - self.margin

    def closing(self, now: float | None = None) -> bool:
        stop_at = self.stop_at
        return stop_at is not None and (time.time() if now is None else now) >= stop_at

    def job_margin(self) -> float:
        """Seconds before the deadline to ask the running job (if any) to stop."""
        policy = MarginPolicy(
            configured=self.margin,
            floor=self.margin_min,
            ceiling=self.margin_max,
            safety=self.margin_safety,
        )
        return policy.margin(None if self.stops is None else self.stops.stop_seconds())

    @property
    def end_at(self) -> float | None:
        """When to stop the running job and end the session: late enough to use the session,
        early enough for the job's measured stop to finish before the deadline."""
        return None if self.deadline is None else self.deadline - self.job_margin()

    def claim_wait(self, wait: float) -> float:
        """A long-poll that ends by ``stop_at``: a claim answered later could not be finished."""
        stop_at = self.stop_at
        return wait if stop_at is None else max(0.0, min(wait, stop_at - time.time()))

    def idle_too_long(self) -> bool:
        return self.idle_exit is not None and time.time() - self.last_work >= self.idle_exit

    def registration(self) -> dict[str, Any]:
        return {"session_started_at": iso(self.started_at), "session_deadline": iso(self.deadline)}


def plan(*, platform: str, detected: Detected, imds_url: str, options: SessionOptions) -> Session:
    started = options.session_start
    if not options.aware:
        return Session(platform=platform, started_at=started, idle_exit=options.idle_exit)
    if started is None:
        started = detected.session_started_at
    hours = options.session_hours
    if hours is None:
        hours = SESSION_HOURS.get(platform)
    deadline = options.deadline
    if deadline is None and hours is not None and started is not None:
        deadline = started + hours * 3600
    session = Session(
        platform=platform,
        started_at=started,
        deadline=deadline,
        margin=options.checkpoint_margin,
        spot=SpotNotice(imds_url) if detected.spot else None,
        spot_poll_seconds=options.spot_poll_seconds,
        idle_exit=options.idle_exit,
        margin_min=options.margin_min,
        margin_max=options.margin_max,
        margin_safety=options.margin_safety,
    )
    if session.closing():
        log.warning(
            "the session deadline %s is less than %.0fs away (session start %s): no work will be "
            "claimed; set --deadline, --session-start or --session-hours if that is wrong",
            iso(deadline),
            session.margin,
            iso(started),
        )
    return session


def open_session(
    *, name: str, overrides: dict[str, Any], options: SessionOptions
) -> tuple[dict[str, Any], Session]:
    """Detect the platform once (unless ``--platform`` names it): the registration payload and
    this session's deadline plan."""
    probe = Probe.here(imds_url=options.imds_url)
    detected = detect(probe, platform=overrides.get("platform"))
    info = describe_host(name=name, overrides=overrides, probe=probe, detected=detected)
    session = plan(
        platform=info["platform"], detected=detected, imds_url=probe.imds_url, options=options
    )
    info.update(session.registration())
    return info, session


class SessionWatch(threading.Thread):
    """Calls ``on_end(reason)`` once: at ``Session.end_at``, or when a spot notice appears."""

    def __init__(
        self, session: Session, *, on_end: Callable[[str], None], stopped: threading.Event
    ) -> None:
        super().__init__(name="baton-session-watch", daemon=True)
        self.session = session
        self._on_end = on_end
        self._stopped = stopped

    def run(self) -> None:
        next_poll = 0.0
        while not self._stopped.wait(self._until_next_look()):
            now = time.time()
            reason = None
            end_at = self.session.end_at
            if end_at is not None and now >= end_at:
                reason = (
                    f"session deadline {iso(self.session.deadline)} is "
                    f"{(self.session.deadline or now) - now:.1f}s away (margin "
                    f"{self.session.job_margin():.1f}s)"
                )
            elif self.session.spot is not None and now >= next_poll:
                next_poll = now + self.session.spot_poll_seconds
                action = self.session.spot.check()
                if action is not None:
                    reason = f"EC2 spot interruption notice: {action.action} at {action.time}"
            if reason is not None:
                self._on_end(reason)
                return

    def _until_next_look(self) -> float:
        """A tick, or less when the stop is due sooner: a late stop could miss the deadline,
        and with a measured margin of a few times the stop there is no tick to spare."""
        end_at = self.session.end_at
        if end_at is None:
            return TICK_SECONDS
        return max(0.0, min(TICK_SECONDS, end_at - time.time()))
