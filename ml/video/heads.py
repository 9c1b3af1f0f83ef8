"""Task heads on a backbone's flat feature vector."""

from __future__ import annotations

import torch
from torch import nn


class ClassificationHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int, hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes)."""
        return self.net(features)


class PositionsHead(nn.Module):
    """Regresses 3D positions of ``frames`` frames (in normalised units).

    The forecast head predicts the frames after the observed ones; the track head the
    observed frames themselves, the track the equation fit reads.
    """

    def __init__(self, in_features: int, frames: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.frames = frames
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, frames * 3),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Positions (B, frames, 3)."""
        return self.net(features).view(-1, self.frames, 3)
