"""Evaluation: predictions, accuracy, forecasting error, equations, and the job's artifacts.

``predictions.jsonl`` holds what the model produced (class, forecast, track and the
equation fitted to them) at the top level of each record, and the ground truth only under
``truth``, so that nothing true can be read as a prediction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch

from ml.video.equations import (
    VideoEquation,
    fit_json,
    split_equation_metrics,
    split_equations,
)
from ml.video.losses import TargetNorm, task_losses
from ml.video.models import VideoModel
from ml.video.plots import plot_confusion_matrix, plot_forecast_error
from ml.video.splits import ForecastSplit
from ml.video.trajectories import CLASS_NAMES

PREDICTIONS_FILE = "predictions.jsonl"
CONFUSION_PNG = "confusion_matrix.png"
FORECAST_PNG = "forecast_error.png"


@torch.no_grad()
def predict(
    model: VideoModel,
    split: ForecastSplit,
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]],
) -> dict[str, torch.Tensor]:
    """Every head's raw output over ``split``, on the CPU in float32."""
    was_training = model.training
    model.eval()
    chunks: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(split), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(split)))
        with autocast():
            outputs = model(split.videos(rows, device))
        for name, value in outputs.items():
            chunks.setdefault(name, []).append(value.float().cpu())
    model.train(was_training)
    return {name: torch.cat(parts) for name, parts in chunks.items()}


def classification_metrics(labels: torch.Tensor, predicted: torch.Tensor) -> dict[str, Any]:
    num_classes = len(CLASS_NAMES)
    confusion = torch.bincount(labels * num_classes + predicted, minlength=num_classes**2)
    confusion = confusion.view(num_classes, num_classes)
    per_class = confusion.diag().double() / confusion.sum(1).clamp_min(1)
    return {
        "accuracy": float((labels == predicted).double().mean()),
        "per_class_accuracy": dict(zip(CLASS_NAMES, per_class.tolist(), strict=True)),
        "confusion_matrix": confusion.tolist(),
    }


def normalised_errors(
    forecast: torch.Tensor, future: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Per sample and horizon (N, k): mean absolute error over x, y, z / trajectory diameter."""
    return (forecast - future).abs().mean(-1) / scale[:, None]


def forecast_metrics(errors: torch.Tensor) -> dict[str, Any]:
    by_horizon = errors.mean(0)
    return {
        "forecast_nmae": float(errors.mean()),
        "forecast_nmae_at_horizon": float(by_horizon[-1]),
        "forecast_nmae_by_horizon": by_horizon.tolist(),
    }


def evaluate(
    outputs: dict[str, torch.Tensor],
    split: ForecastSplit,
    norm: TargetNorm,
    weights: dict[str, float],
    equations: bool = False,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Metrics of ``outputs`` on ``split``, and per-sample values for the artifacts.

    With ``equations`` (the final test; parsing every equation with sympy is too slow for
    each validation) and both the class and track heads, the equation metrics too.
    """
    everything = torch.arange(len(split))
    losses = task_losses(outputs, split.targets(everything, norm, torch.device("cpu")), weights)
    metrics: dict[str, Any] = {name: float(value) for name, value in losses.items()}
    per_sample: dict[str, torch.Tensor] = {}
    if "classify" in outputs:
        per_sample["probabilities"] = outputs["classify"].softmax(-1)
        per_sample["predicted"] = outputs["classify"].argmax(-1)
        metrics.update(classification_metrics(split.labels, per_sample["predicted"]))
    if "forecast" in outputs:
        per_sample["forecast"] = norm.denormalise(outputs["forecast"])
        per_sample["errors"] = normalised_errors(per_sample["forecast"], split.future, split.scale)
        metrics.update(forecast_metrics(per_sample["errors"]))
    if "track" in outputs:
        per_sample["track"] = norm.denormalise(outputs["track"])
        track_errors = normalised_errors(per_sample["track"], split.track, split.scale)
        metrics["track_nmae"] = float(track_errors.mean())
        if equations and "predicted" in per_sample:
            fitted = split_equations(split, per_sample["predicted"], per_sample["track"])
            metrics.update(split_equation_metrics(split, fitted))
    return metrics, per_sample


def write_artifacts(
    directory: Path,
    split: ForecastSplit,
    metrics: dict[str, Any],
    per_sample: dict[str, torch.Tensor],
) -> list[Path]:
    """Predictions JSONL, the confusion matrix and forecasting-error plots; returns the files."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / PREDICTIONS_FILE]
    fitted = (
        split_equations(split, per_sample["predicted"], per_sample["track"])
        if "predicted" in per_sample and "track" in per_sample
        else None
    )
    with written[0].open("w") as out:
        for row in range(len(split)):
            record = _prediction_record(split, per_sample, row)
            if fitted is not None:
                _add_equation(record, fitted[row])
            out.write(json.dumps(record) + "\n")
    if "confusion_matrix" in metrics:
        written.append(directory / CONFUSION_PNG)
        plot_confusion_matrix(metrics["confusion_matrix"], CLASS_NAMES, written[-1])
    if "errors" in per_sample:
        errors = per_sample["errors"]
        by_class = {
            name: errors[split.labels == label].mean(0).tolist()
            for label, name in enumerate(CLASS_NAMES)
            if bool((split.labels == label).any())
        }
        written.append(directory / FORECAST_PNG)
        plot_forecast_error(errors.mean(0).tolist(), by_class, written[-1])
    return written


def _points(positions: torch.Tensor) -> list[list[float]]:
    return [[round(x, 4) for x in p] for p in positions.tolist()]


def _prediction_record(
    split: ForecastSplit, per_sample: dict[str, torch.Tensor], row: int
) -> dict[str, Any]:
    # What the model was shown (the input's augmentation) and what it produced; the truth
    # goes under "truth" only.
    truth: dict[str, Any] = {
        "class": CLASS_NAMES[int(split.labels[row])],
        "equation": split.data.equations[row],
        "description": split.data.descriptions[row],
        "future": _points(split.future[row]),
        "track": _points(split.track[row]),
    }
    record: dict[str, Any] = {
        "index": int(split.indices[row]),
        "augmentation": split.data.augmentations[row],
    }
    if "predicted" in per_sample:
        record["predicted"] = CLASS_NAMES[int(per_sample["predicted"][row])]
        record["probabilities"] = [round(p, 5) for p in per_sample["probabilities"][row].tolist()]
    if "forecast" in per_sample:
        record["forecast"] = _points(per_sample["forecast"][row])
        record["nmae_by_horizon"] = [round(e, 5) for e in per_sample["errors"][row].tolist()]
    if "track" in per_sample:
        record["track"] = _points(per_sample["track"][row])
    record["truth"] = truth
    return record


def _add_equation(record: dict[str, Any], fitted: VideoEquation) -> None:
    """The fitted equation, and beside the truth its own fit and the parameter errors."""
    record["fit"] = fit_json(fitted.fit)
    record["equation"] = fitted.equation
    record["truth"]["fit"] = fit_json(fitted.truth)
    # Infinite (class wrong) errors are written as null: the file stays plain JSON.
    record["param_errors"] = {
        name: round(value, 5) if value != float("inf") else None
        for name, value in fitted.errors.items()
    }
