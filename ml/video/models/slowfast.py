"""A SlowFast-style backbone: a wide pathway on few frames, a thin one on every frame.

The fast pathway feeds the slow one through time-strided lateral convolutions, as in
Feichtenhofer et al. (2019); the slow pathway only convolves over time in its last stage.
"""

from __future__ import annotations

import torch
from torch import nn

from ml.video.models.base import GridPool, Unit3d


class ResBlock3d(nn.Module):
    """Temporal conv, spatial conv (strided), pointwise conv, plus a projected shortcut."""

    def __init__(self, in_channels: int, out_channels: int, temporal_kernel: int, stride: int):
        super().__init__()
        mid = out_channels // 2
        self.body = nn.Sequential(
            Unit3d(in_channels, mid, (temporal_kernel, 1, 1)),
            Unit3d(mid, mid, (1, 3, 3), stride=(1, stride, stride)),
            Unit3d(mid, out_channels, (1, 1, 1), relu=False),
        )
        self.shortcut = Unit3d(in_channels, out_channels, (1, 1, 1), (1, stride, stride), False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class Lateral(nn.Module):
    """Fast -> slow fusion: a time-strided conv, aligned so its frames are the slow frames."""

    def __init__(self, channels: int, alpha: int):
        super().__init__()
        self.alpha = alpha
        self.conv = nn.Conv3d(
            channels, 2 * channels, (5, 1, 1), stride=(alpha, 1, 1), padding=(2, 0, 0)
        )

    def forward(self, fast: torch.Tensor) -> torch.Tensor:
        return self.conv(fast[:, :, slow_start(fast.shape[2], self.alpha) :])


def slow_start(num_frames: int, alpha: int) -> int:
    """First frame the slow pathway samples, chosen so it always sees the latest frame."""
    return (num_frames - 1) % alpha


class SlowFastBackbone(nn.Module):
    def __init__(
        self,
        width: int,
        alpha: int,
        beta_inv: int,
        in_channels: int = 3,
        grid: tuple[int, int, int] = (2, 4, 4),
    ):
        super().__init__()
        self.alpha = alpha
        fast = max(8, width // beta_inv)
        self.slow_stem = Unit3d(in_channels, width, (1, 5, 5), stride=(1, 2, 2))
        self.fast_stem = Unit3d(in_channels, fast, (5, 5, 5), stride=(1, 2, 2))
        self.lateral1 = Lateral(fast, alpha)
        self.slow1 = ResBlock3d(width + 2 * fast, 2 * width, temporal_kernel=1, stride=2)
        self.fast1 = ResBlock3d(fast, 2 * fast, temporal_kernel=3, stride=2)
        self.lateral2 = Lateral(2 * fast, alpha)
        self.slow2 = ResBlock3d(2 * width + 4 * fast, 4 * width, temporal_kernel=3, stride=2)
        self.fast2 = ResBlock3d(2 * fast, 4 * fast, temporal_kernel=3, stride=2)
        self.slow_pool = GridPool(4 * width, grid)
        self.fast_pool = GridPool(4 * fast, grid)
        self.out_features = self.slow_pool.out_features + self.fast_pool.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slow = self.slow_stem(x[:, :, slow_start(x.shape[2], self.alpha) :: self.alpha])
        fast = self.fast_stem(x)
        slow = self.slow1(torch.cat([slow, self.lateral1(fast)], dim=1))
        fast = self.fast1(fast)
        slow = self.slow2(torch.cat([slow, self.lateral2(fast)], dim=1))
        fast = self.fast2(fast)
        return torch.cat([self.slow_pool(slow), self.fast_pool(fast)], dim=1)
