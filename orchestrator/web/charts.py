"""Geometry for the inline SVG charts; the templates only draw what is computed here.

Plots are drawn in a unit box (x in slots or 0..100, y in 0..100) and stretched to their
box by CSS; axis labels are HTML around them, so text stays legible at any width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SCALE = 100.0  # the height of the plot box, and the width of a line chart's


def _y(value: float, low: float, high: float) -> float:
    return SCALE * (1 - (value - low) / ((high - low) or 1.0))


@dataclass(frozen=True)
class Bar:
    label: str
    total: float  # e.g. workers connected
    part: float  # the share of ``total`` that was busy


@dataclass(frozen=True)
class BarGeom:
    label: str  # under the bar; empty for most, so the axis stays readable
    x: float
    width: float
    total_y: float
    part_y: float
    title: str


@dataclass(frozen=True)
class BarChart:
    bars: list[BarGeom]
    y_max: float
    mean_share: float | None  # part / total over the whole chart
    height: float = SCALE


def bar_chart(bars: Sequence[Bar], *, label_every: int = 6) -> BarChart:
    top = max([b.total for b in bars] + [1.0])
    geoms = [
        BarGeom(
            label=bar.label if (len(bars) - 1 - i) % label_every == 0 else "",
            x=i + 0.1,
            width=0.8,
            total_y=_y(bar.total, 0, top),
            part_y=_y(bar.part, 0, top),
            title=f"{bar.label}: {bar.part:.2f} busy of {bar.total:.2f} connected",
        )
        for i, bar in enumerate(bars)
    ]
    total = sum(b.total for b in bars)
    return BarChart(geoms, top, sum(b.part for b in bars) / total if total else None)


@dataclass(frozen=True)
class Line:
    label: str
    points: str  # "x,y x,y ..." in the unit box


@dataclass(frozen=True)
class LineChart:
    title: str
    lines: list[Line]
    x_min: float
    x_max: float
    y_min: float
    y_max: float
    last: float
    size: float = SCALE


Points = Sequence[tuple[float, float]]


def line_chart(title: str, series: Sequence[tuple[str, Points]]) -> LineChart:
    """One chart, one polyline per series (e.g. per attempt), sharing both axes."""
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts]
    x_min, x_max, y_min, y_max = min(xs), max(xs), min(ys), max(ys)

    def at(x: float, y: float) -> str:
        return f"{SCALE * (x - x_min) / ((x_max - x_min) or 1.0):.2f},{_y(y, y_min, y_max):.2f}"

    lines = [Line(label, " ".join(at(x, y) for x, y in pts)) for label, pts in series if pts]
    return LineChart(title, lines, x_min, x_max, y_min, y_max, last=ys[-1])
