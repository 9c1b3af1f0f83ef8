"""How long before a known session end the running job must be asked to stop.

A stop is: the job finishes the step it is in, writes a checkpoint, exits; the agent uploads
that checkpoint and releases the lease. A fixed margin sized for the slowest job wastes the
rest of every session on fast ones, so the agent times the parts of a stop as the job runs:
the time between progress messages (a step), between the last message and a checkpoint
message (writing one), and each checkpoint's upload. The margin is then ``safety`` times
their sum, kept between a floor and a ceiling; before all three are seen, the configured
margin. Pure logic: worker/agent.py feeds it, worker/deadline.py asks it.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

DEFAULT_MARGIN_MIN_SECONDS = 60.0
DEFAULT_MARGIN_MAX_SECONDS = 1800.0
DEFAULT_MARGIN_SAFETY = 3.0
RECENT = 5  # the slowest of the last few of each: one fast checkpoint does not shrink it


@dataclass(frozen=True)
class MarginPolicy:
    configured: float  # before anything is measured
    floor: float = DEFAULT_MARGIN_MIN_SECONDS
    ceiling: float = DEFAULT_MARGIN_MAX_SECONDS
    safety: float = DEFAULT_MARGIN_SAFETY

    def __post_init__(self) -> None:
        if min(self.configured, self.floor, self.ceiling) < 0 or self.safety < 1:
            raise ValueError("margins must be non-negative and the safety factor at least 1")
        if self.floor > self.ceiling:
            raise ValueError(f"margin floor {self.floor:g}s is above its ceiling {self.ceiling:g}s")

    def margin(self, stop_seconds: float | None) -> float:
        """Seconds before the deadline to ask for the stop, given a stop's measured length."""
        if stop_seconds is None:
            return self.configured
        return min(self.ceiling, max(self.floor, self.safety * stop_seconds))


class StopTimer:
    """What one running job's stops are measured to take, from its messages and uploads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: deque[float] = deque(maxlen=RECENT)
        self._writes: deque[float] = deque(maxlen=RECENT)
        self._uploads: deque[float] = deque(maxlen=RECENT)
        self._last_message: float | None = None
        self._last_step: int | None = None

    def progress(self, step: int | None, at: float) -> None:
        """A progress message: with a new step, the time since the previous one is a step."""
        with self._lock:
            if step is not None and step != self._last_step:
                if self._last_step is not None and self._last_message is not None:
                    self._steps.append(at - self._last_message)
                self._last_step = step
            self._last_message = at

    def checkpoint(self, at: float) -> None:
        """A checkpoint message: the time since the job's previous message was spent writing
        it (an over-estimate when the job says nothing in between, which errs on the safe side).
        """
        with self._lock:
            if self._last_message is not None:
                self._writes.append(at - self._last_message)
            self._last_message = at

    def upload(self, seconds: float) -> None:
        with self._lock:
            self._uploads.append(seconds)

    def stop_seconds(self) -> float | None:
        """A step, a checkpoint written and one uploaded; None until each was seen once."""
        with self._lock:
            if not (self._steps and self._writes and self._uploads):
                return None
            return max(self._steps) + max(self._writes) + max(self._uploads)
