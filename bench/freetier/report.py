"""The measures of each mode as text (a markdown table) and JSON; every line names the scale."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path
from typing import Any

from bench.freetier.drive import Lived, ModeRun
from bench.freetier.measure import Measures
from bench.freetier.scenario import Scenario, Session

LABELS = {
    "by_hand": "by hand (no Baton)",
    "lease_only": "Baton, lease expiry only",
    "baton": "Baton as shipped",
}


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}%"


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} h" if values else "none"


def summary(scenario: Scenario, m: Measures, wall: float) -> str:
    o = m.overall
    return (
        f"[{scenario.scale_text}] {LABELS[m.mode]}: yield {_pct(o['yield'])}, "
        f"kept {o['work_kept_hours']:.1f} of {o['connected_hours']:.1f} GPU-h connected, "
        f"idle {o['idle_hours']:.1f} h, steps lost {int(o['steps_lost'])} "
        f"{dict(sorted(m.lost_by_end.items()))}, jobs {m.jobs_finished}/{m.jobs}, "
        f"wall {wall:.0f} s"
    )


def table(scenario: Scenario, results: list[Measures]) -> str:
    scale = scenario.scale_text
    head = "| " + " | ".join(["", *(LABELS[m.mode] for m in results)]) + " |"
    lines = [head, "|" + "---|" * (len(results) + 1)]

    def row(name: str, cell: Any) -> None:
        lines.append("| " + " | ".join([name, *(cell(m) for m in results)]) + " |")

    row(f"**yield, all accounts** ({scale})", lambda m: f"**{_pct(m.overall['yield'])}**")
    for account in scenario.accounts:
        row(
            f"yield, {account.name} ({account.end})",
            lambda m, a=account.name: _pct(m.per_account[a]["yield"]),
        )
    row(f"GPU-h connected ({scale})", lambda m: f"{m.overall['connected_hours']:.1f}")
    row(f"GPU-h of steps kept ({scale})", lambda m: f"{m.overall['work_kept_hours']:.1f}")
    row(f"GPU-h connected, no job alive ({scale})", lambda m: f"{m.overall['idle_hours']:.1f}")
    row(
        f"… before a session's first job ({scale})",
        lambda m: f"{m.overall['idle_boot_hours']:.1f}",
    )
    row(f"… between jobs ({scale})", lambda m: f"{m.overall['idle_between_hours']:.1f}")
    row(f"… after a session's last job ({scale})", lambda m: f"{m.overall['idle_tail_hours']:.1f}")
    row(f"GPU-h in job start-ups ({scale})", lambda m: f"{m.overall['startup_hours']:.1f}")
    row(f"GPU-h writing checkpoints ({scale})", lambda m: f"{m.overall['checkpoint_hours']:.1f}")
    row(f"GPU-h of steps lost ({scale})", lambda m: f"{m.overall['work_lost_hours']:.1f}")
    for end in ("deadline", "spot", "disconnect", "sleep"):
        row(f"steps lost at {end} ends", lambda m, e=end: str(m.lost_by_end.get(e, 0)))
    row(f"death to running again, median ({scale})", lambda m: _median(m.recoveries_hours))
    for account in scenario.accounts:
        if account.quota_hours is not None:
            row(
                f"quota used, {account.name} ({scale})",
                lambda m, a=account: (
                    f"{m.per_account[a.name]['connected_hours']:.1f} of {a.quota_hours:g} h"
                ),
            )
    row("jobs finished", lambda m: f"{m.jobs_finished} of {m.jobs}")
    row(
        f"makespan ({scale})",
        lambda m: "not all finished" if m.makespan_hours is None else f"{m.makespan_hours:.1f} h",
    )
    return "\n".join(lines)


def write_json(
    path: Path,
    scenario: Scenario,
    seed: int,
    results: list[Measures],
    walls: dict[str, float],
    raw: dict[str, ModeRun],
) -> None:
    """The measures, and each mode's raw record (sessions as they happened, the ledger), from
    which ``measure`` gives them again."""
    body = {
        "scenario": scenario.name,
        "seed": seed,
        "time_scale": scenario.scale_text,
        "hour_seconds": scenario.hour_seconds,
        "modes": {
            m.mode: {
                "wall_seconds": walls[m.mode],
                "overall": m.overall,
                "per_account": m.per_account,
                "steps_lost_by_end": m.lost_by_end,
                "jobs_finished": m.jobs_finished,
                "jobs": m.jobs,
                "finished_once": m.finished_once,
                "max_overlap_seconds": m.max_overlap_seconds,
                "recoveries_hours": m.recoveries_hours,
                "makespan_hours": m.makespan_hours,
                "raw": dataclasses.asdict(raw[m.mode]),
            }
            for m in results
        },
    }
    path.write_text(json.dumps(body, indent=1, default=str) + "\n")


def read_raw(path: Path) -> tuple[int, dict[str, float], dict[str, ModeRun]]:
    """The seed, wall times and raw records a ``write_json`` file holds (to measure again)."""
    body = json.loads(path.read_text())
    walls, raw = {}, {}
    for mode, entry in body["modes"].items():
        walls[mode] = entry["wall_seconds"]
        record = dict(entry["raw"])
        record["sessions"] = [
            Lived(Session(**lived["plan"]), lived["started"], lived["ended"])
            for lived in record["sessions"]
        ]
        raw[mode] = ModeRun(**record)
    return int(body["seed"]), walls, raw
