"""What every video model shares: image-only input checking, the pooling, the heads."""

from __future__ import annotations

import math

import torch
from torch import nn

MIN_IMAGE_SIZE = 8


def check_video_input(video: torch.Tensor, channels: int) -> None:
    """Reject anything but a batch of image sequences (B, T, C, H, W).

    The models must learn motion from pixels: coordinate-shaped input such as (B, T, 2) or
    (B, T, 3) is refused rather than silently broadcast into a convolution.
    """
    shape = tuple(video.shape)
    if video.dim() != 5:
        hint = (
            " This looks like trajectory coordinates; the models only accept rendered frames."
            if video.dim() == 3 and shape[-1] in (2, 3)
            else ""
        )
        raise ValueError(f"expected an image tensor (B, T, C, H, W), got shape {shape}.{hint}")
    _, _, c, h, w = shape
    if c != channels:
        raise ValueError(
            f"expected an image tensor (B, T, C, H, W) with C = {channels}, got {shape}"
        )
    if min(h, w) < MIN_IMAGE_SIZE:
        raise ValueError(
            f"expected an image tensor (B, T, C, H, W) with H, W >= {MIN_IMAGE_SIZE},"
            f" got shape {shape}"
        )


class GridPool(nn.Module):
    """Average-pool a feature map (B, C, T, H, W) onto a coarse grid and flatten it.

    Keeping a spatial and temporal grid, not one global average, preserves where and when
    the object was: the forecasting head needs both.
    """

    def __init__(self, channels: int, grid: tuple[int, int, int]):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(grid)
        self.out_features = channels * math.prod(grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x).flatten(1)


class Unit3d(nn.Sequential):
    """Conv3d, batch norm, ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int],
        stride: tuple[int, int, int] = (1, 1, 1),
        relu: bool = True,
    ):
        padding = (kernel[0] // 2, kernel[1] // 2, kernel[2] // 2)
        layers: list[nn.Module] = [
            nn.Conv3d(in_channels, out_channels, kernel, stride, padding, bias=False),
            nn.BatchNorm3d(out_channels),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class VideoModel(nn.Module):
    """A backbone (B, C, T, H, W) -> (B, F) with named heads; returns {head name: output}."""

    def __init__(self, backbone: nn.Module, heads: dict[str, nn.Module], in_channels: int = 3):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads)
        self.in_channels = in_channels

    def forward(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        check_video_input(video, self.in_channels)
        features = self.backbone(video.transpose(1, 2))
        return {name: head(features) for name, head in self.heads.items()}
