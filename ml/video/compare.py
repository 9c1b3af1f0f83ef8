"""Compare finished branches: one row per run, ranked, as JSON and a Markdown table.

A row is a training's result, or a describe job's (the training's result plus the
description metrics); the columns a row lacks show as "-".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ml.common.checkpoints import read_json
from ml.video.job import METRICS_FILE

# (column title, result key, format)
COLUMNS = (
    ("accuracy", "test_accuracy", "{:.1%}"),
    ("nMAE@h", "test_forecast_nmae_at_horizon", "{:.1%}"),
    ("nMAE mean", "test_forecast_nmae", "{:.1%}"),
    ("eq parses", "test_equation_parse_rate", "{:.1%}"),
    ("eq right", "test_equation_correct_rate", "{:.1%}"),
    ("params ≤10%", "test_param_within_10pct_mean", "{:.1%}"),
    ("desc coherent", "description_coherence", "{:.1%}"),
    ("template coherent", "template_description_coherence", "{:.1%}"),
    ("steps", "steps", "{}"),
    ("best step", "best_step", "{}"),
)

SUMMARY_KEYS = (
    "name",
    "backbone",
    "describer",
    "forecast_horizon",
    *(key for _, key, _ in COLUMNS),
)


def summary(row: dict[str, Any]) -> dict[str, Any]:
    """The row's table columns only: small enough for a job result."""
    return {key: row.get(key) for key in SUMMARY_KEYS}


def load_run(run: dict[str, Any] | str) -> dict[str, Any]:
    """A run's result: given as the dict itself, or read from its output directory."""
    if isinstance(run, dict):
        result, fallback = dict(run), "run"
    else:
        path = Path(run)
        result = read_json(path / METRICS_FILE if path.is_dir() else path)
        fallback = path.name if path.is_dir() else path.parent.name
    result.setdefault("name", result.get("experiment_id") or result.get("backbone") or fallback)
    return result


def compare_runs(
    runs: list[dict[str, Any] | str], rank_by: str, higher_is_better: bool
) -> list[dict[str, Any]]:
    """Rows sorted best first by ``rank_by``; runs without that value go last."""
    rows = [load_run(run) for run in runs]

    def key(row: dict[str, Any]) -> tuple[bool, float]:
        value = row.get(rank_by)
        if not isinstance(value, int | float):
            return (True, 0.0)
        return (False, -value if higher_is_better else value)

    return sorted(rows, key=key)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    horizon = next((r["forecast_horizon"] for r in rows if "forecast_horizon" in r), None)
    titles = [t.replace("@h", f"@{horizon}" if horizon else "@h") for t, _, _ in COLUMNS]
    lines = [
        "| run | backbone | describer | " + " | ".join(titles) + " |",
        "|---|---|---|" + "---:|" * len(COLUMNS),
    ]
    for row in rows:
        cells = [
            fmt.format(row[key]) if isinstance(row.get(key), int | float) else "-"
            for _, key, fmt in COLUMNS
        ]
        labels = f"| {row['name']} | {row.get('backbone', '-')} | {row.get('describer', '-')} | "
        lines.append(labels + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_comparison(rows: list[dict[str, Any]], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    table = directory / "comparison.md"
    table.write_text(markdown_table(rows))
    data = directory / "comparison.json"
    data.write_text(json.dumps(rows, indent=2))
    return table, data
