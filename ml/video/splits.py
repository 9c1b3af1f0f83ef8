"""Train/val/test splits and the model-facing view of them: observed frames and future points."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ml.common.seeding import derive_seed
from ml.video.dataset import VideoDataset
from ml.video.losses import TargetNorm
from ml.video.trajectories import trajectory_scale

SPLITS = ("train", "val", "test")


def split_indices(
    labels: torch.Tensor, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, torch.Tensor]:
    """Stratified split: each class is cut into test, val and train in the same proportions."""
    rng = np.random.default_rng(derive_seed(seed, "split"))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for label in labels.unique().tolist():
        members = rng.permutation(np.flatnonzero(labels.numpy() == label))
        n_test = round(len(members) * test_fraction)
        n_val = round(len(members) * val_fraction)
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    return {name: torch.from_numpy(np.sort(np.concatenate(p))) for name, p in parts.items()}


@dataclass
class ForecastSplit:
    """One split as the model sees it: the first frames in, the following positions out."""

    indices: torch.Tensor  # (N,) positions in the source dataset
    data: VideoDataset
    observed: int  # frames shown to the model
    horizon: int  # frames to forecast after them

    def __post_init__(self) -> None:
        if self.observed + self.horizon > self.data.videos.shape[1]:
            raise ValueError("observed + horizon frames exceed the dataset's clip length")

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def labels(self) -> torch.Tensor:
        return self.data.labels

    @property
    def future(self) -> torch.Tensor:
        """Positions (N, horizon, 3) to forecast, in the filming camera's coordinates.

        Camera coordinates, not world ones: with several camera poses and nothing else in
        the picture, a monocular model can only know where the object is relative to the camera.
        """
        return self.data.trajectory_cam[:, self.observed : self.observed + self.horizon]

    @property
    def track(self) -> torch.Tensor:
        """Positions (N, observed, 3) of the observed frames, in camera coordinates."""
        return self.data.trajectory_cam[:, : self.observed]

    def targets(
        self, rows: torch.Tensor, norm: TargetNorm, device: torch.device
    ) -> dict[str, torch.Tensor]:
        """Each head's training target for ``rows``: labels, normalised positions."""
        return {
            "classify": self.labels[rows].to(device),
            "forecast": norm.normalise(self.future[rows]).to(device),
            "track": norm.normalise(self.track[rows]).to(device),
        }

    @property
    def scale(self) -> torch.Tensor:
        """Each trajectory's diameter over the whole clip, the unit of normalised errors."""
        clip = self.data.trajectory_3d[:, : self.observed + self.horizon].numpy()
        return torch.from_numpy(trajectory_scale(clip))

    def videos(self, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Observed frames of ``rows`` as floats in [0, 1], (B, observed, 3, H, W)."""
        frames = self.data.videos[rows, : self.observed].to(device, non_blocking=True)
        return frames.float().div_(255)


def make_splits(
    data: VideoDataset,
    *,
    observed: int,
    horizon: int,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, ForecastSplit]:
    indices = split_indices(data.labels, val_fraction, test_fraction, seed)
    return {
        name: ForecastSplit(idx, data.subset(idx), observed, horizon)
        for name, idx in indices.items()
    }
