"""Video backbones with classification, forecasting and track heads."""

from __future__ import annotations

from torch import nn

from ml.video.configs import ModelConfig
from ml.video.heads import ClassificationHead, PositionsHead
from ml.video.models.base import VideoModel, check_video_input
from ml.video.models.i3d import I3DBackbone
from ml.video.models.slowfast import SlowFastBackbone

__all__ = ["VideoModel", "build_model", "check_video_input"]


def _backbone(config: ModelConfig) -> I3DBackbone | SlowFastBackbone:
    if config.backbone == "i3d":
        return I3DBackbone(config.width)
    if config.backbone == "slowfast":
        return SlowFastBackbone(config.width, config.alpha, config.beta_inv)
    raise ValueError(f"unknown backbone {config.backbone!r}")


def build_model(config: ModelConfig, num_classes: int, horizon: int, observed: int) -> VideoModel:
    """``observed`` frames are shown to the model; the forecast covers ``horizon`` after them."""
    backbone = _backbone(config)
    heads: dict[str, nn.Module] = {}
    if "classify" in config.heads:
        heads["classify"] = ClassificationHead(
            backbone.out_features, num_classes, dropout=config.dropout
        )
    if "forecast" in config.heads:
        heads["forecast"] = PositionsHead(backbone.out_features, horizon, dropout=config.dropout)
    if "track" in config.heads:
        heads["track"] = PositionsHead(backbone.out_features, observed, dropout=config.dropout)
    return VideoModel(backbone, heads)
