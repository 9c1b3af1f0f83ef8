"""An I3D-style backbone: Inception blocks with 3D (space-time) convolutions."""

from __future__ import annotations

import torch
from torch import nn

from ml.video.models.base import GridPool, Unit3d


class Inception3d(nn.Module):
    """I3D's mixed block: 1x1x1, 3x3x3, two stacked 3x3x3 and pooled branches, concatenated."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        if out_channels % 4:
            raise ValueError("Inception3d needs out_channels divisible by 4")
        branch = out_channels // 4
        self.point = Unit3d(in_channels, branch, (1, 1, 1))
        self.conv = nn.Sequential(
            Unit3d(in_channels, branch, (1, 1, 1)), Unit3d(branch, branch, (3, 3, 3))
        )
        # Two stacked 3x3x3 convolutions see as far as I3D's inflated 5x5 branch.
        self.wide = nn.Sequential(
            Unit3d(in_channels, branch, (1, 1, 1)),
            Unit3d(branch, branch, (3, 3, 3)),
            Unit3d(branch, branch, (3, 3, 3)),
        )
        self.pooled = nn.Sequential(
            nn.MaxPool3d(3, stride=1, padding=1), Unit3d(in_channels, branch, (1, 1, 1))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.point(x), self.conv(x), self.wide(x), self.pooled(x)], dim=1)


class I3DBackbone(nn.Module):
    def __init__(self, width: int, in_channels: int = 3, grid: tuple[int, int, int] = (2, 4, 4)):
        super().__init__()
        self.features = nn.Sequential(
            Unit3d(in_channels, width, (3, 5, 5), stride=(1, 2, 2)),
            # Like I3D, pool space before time so early layers keep every frame.
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            Inception3d(width, 2 * width),
            Inception3d(2 * width, 4 * width),
            nn.MaxPool3d(2, stride=2),
            Inception3d(4 * width, 8 * width),
        )
        self.pool = GridPool(8 * width, grid)
        self.out_features = self.pool.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x))
