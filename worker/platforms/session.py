"""When this session began: the start of PID 1, which in a notebook's container is the session."""

from __future__ import annotations

import os

from worker.platforms.probe import Probe


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return 100


def session_started_at(probe: Probe) -> float | None:
    """Unix time PID 1 started (boot time + its start in clock ticks), or None without /proc."""
    try:
        stat = probe.path("/proc/1/stat").read_text()
        system = probe.path("/proc/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    fields = stat.rpartition(")")[2].split()
    boot = next((ln.split()[1] for ln in system.splitlines() if ln.startswith("btime ")), None)
    try:
        start_ticks = int(fields[19])  # field 22, starttime
        return int(boot) + start_ticks / _clock_ticks() if boot is not None else None
    except (IndexError, ValueError):
        return None
