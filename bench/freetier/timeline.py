"""The timeline picture: per mode, one row per account; its sessions as grey bars (the colour
of their edge says how they ended) and each job process on top, one colour per job."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.freetier.drive import ModeRun
from bench.freetier.measure import Measures, live_spans
from bench.freetier.report import LABELS
from bench.freetier.scenario import Scenario

END_COLOURS = {
    "deadline": "tab:blue",
    "disconnect": "tab:red",
    "spot": "tab:orange",
    "sleep": "tab:purple",
    "over": "grey",
}


def draw(path: Path, scenario: Scenario, runs: list[ModeRun], results: list[Measures]) -> None:
    names = [a.name for a in scenario.accounts]
    jobs = sorted({job for m in results for job in m.runs})
    cmap = plt.get_cmap("tab20")
    colour = {job: cmap(i % 20) for i, job in enumerate(jobs)}
    fig, axes = plt.subplots(len(runs), 1, figsize=(16, 2.2 + 0.55 * len(names) * len(runs)))
    axes = [axes] if len(runs) == 1 else list(axes)
    hours = 1 / scenario.hour_seconds
    lease = scenario.minutes_wall(scenario.baton.lease_minutes)
    for ax, run, m in zip(axes, runs, results, strict=True):
        for y, name in enumerate(names):
            for lived in run.sessions:
                if lived.plan.account != name:
                    continue
                start = (lived.started - run.t0) * hours
                length = ((lived.ended or run.ended) - lived.started) * hours
                ax.broken_barh(
                    [(start, length)],
                    (y - 0.4, 0.8),
                    facecolors="0.88",
                    edgecolors=END_COLOURS[lived.plan.how],
                    linewidth=1.2,
                )
            for job, job_runs in m.runs.items():
                for r in job_runs:
                    if r.account != name:
                        continue
                    # Its start-up, then the stretches it made steps in (a night asleep
                    # splits one process's bar in two).
                    first = r.steps[0][0] if r.steps else r.last
                    bars = [(r.started, first), *live_spans(r, lease)]
                    ax.broken_barh(
                        [((a - run.t0) * hours, (b - a) * hours) for a, b in bars],
                        (y - 0.25, 0.5),
                        facecolors=colour[job],
                    )
        ax.set_yticks(range(len(names)), names)
        ax.set_xlim(0, scenario.hours)
        ax.set_title(
            f"{LABELS[run.mode]}: yield {100 * m.overall['yield']:.1f}% "
            f"({scenario.scale_text}; session edge: "
            + ", ".join(f"{k} {v.removeprefix('tab:')}" for k, v in END_COLOURS.items())
            + ")",
            fontsize=9,
        )
    axes[-1].set_xlabel(f"platform hours ({scenario.scale_text})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
