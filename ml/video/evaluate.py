"""Evaluation: predictions, accuracy and forecasting error, and the job's artifacts."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch

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
    forecast_weight: float,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Metrics of ``outputs`` on ``split``, and per-sample values for the artifacts."""
    losses = task_losses(outputs, split.labels, norm.normalise(split.future), forecast_weight)
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
    with written[0].open("w") as out:
        for row in range(len(split)):
            out.write(json.dumps(_prediction_record(split, per_sample, row)) + "\n")
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


def _prediction_record(
    split: ForecastSplit, per_sample: dict[str, torch.Tensor], row: int
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "index": int(split.indices[row]),
        "label": CLASS_NAMES[int(split.labels[row])],
        "equation": split.data.equations[row],
        "description": split.data.descriptions[row],
        "augmentation": split.data.augmentations[row],
    }
    if "predicted" in per_sample:
        record["predicted"] = CLASS_NAMES[int(per_sample["predicted"][row])]
        record["probabilities"] = [round(p, 5) for p in per_sample["probabilities"][row].tolist()]
    if "forecast" in per_sample:
        record["forecast"] = [
            [round(x, 4) for x in p] for p in per_sample["forecast"][row].tolist()
        ]
        record["future"] = [[round(x, 4) for x in p] for p in split.future[row].tolist()]
        record["nmae_by_horizon"] = [round(e, 5) for e in per_sample["errors"][row].tolist()]
    return record
