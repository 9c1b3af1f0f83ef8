"""Template filters: durations, times and numbers the way the pages show them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

NONE = "\N{EN DASH}"


def duration(seconds: float | None) -> str:
    """Compact and coarse: 42 s, 7 min, 3 h 05 min, 2 d 4 h."""
    if seconds is None:
        return NONE
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else NONE


def iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def percent(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.0f}%"


def rate(steps_per_second: float | None) -> str:
    if not steps_per_second:
        return NONE
    if steps_per_second >= 1:
        return f"{steps_per_second:.1f} steps/s"
    return f"{steps_per_second * 60:.1f} steps/min"


def number(value: float | None) -> str:
    if value is None:
        return NONE
    return f"{value:.4g}"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


FILTERS: dict[str, Callable[..., str]] = {
    "duration": duration,
    "when": when,
    "iso": iso,
    "percent": percent,
    "rate": rate,
    "number": number,
    "pretty_json": pretty_json,
}
