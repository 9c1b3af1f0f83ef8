"""PNG plots of the evaluation, drawn off-screen."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

# Jobs run headless: pick the file-only backend before pyplot loads.
matplotlib.use("Agg")
import matplotlib.pyplot as plt

FORECAST_TARGET = 0.10


def plot_confusion_matrix(
    confusion: Sequence[Sequence[int]], class_names: Sequence[str], path: Path
) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    image = ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=30)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max(max(row) for row in confusion) or 1
    for i, row in enumerate(confusion):
        for j, count in enumerate(row):
            colour = "white" if count > peak / 2 else "black"
            ax.text(j, i, str(count), ha="center", va="center", color=colour)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_forecast_error(
    overall: Sequence[float], by_class: Mapping[str, Sequence[float]], path: Path
) -> None:
    """Normalised MAE against frames ahead, overall and per class, with the 10% target."""
    horizons = range(1, len(overall) + 1)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, errors in by_class.items():
        ax.plot(horizons, errors, marker=".", alpha=0.7, label=name)
    ax.plot(horizons, overall, marker="o", color="black", linewidth=2, label="all")
    ax.axhline(FORECAST_TARGET, color="red", linestyle="--", label="target")
    ax.set_xticks(list(horizons))
    ax.set_xlabel("frames ahead")
    ax.set_ylabel("MAE / trajectory diameter")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
