"""Training objective: cross-entropy for the class, Huber on normalised positions (the
forecast frames and, for the track head, the observed ones)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Huber's quadratic zone, in target standard deviations: errors past it count linearly,
# which matches the MAE the forecasts are judged by.
HUBER_BETA = 0.1


@dataclass
class TargetNorm:
    """Per-axis standardisation of forecast targets, fitted on the training split."""

    mean: torch.Tensor  # (3,)
    std: torch.Tensor  # (3,)

    @classmethod
    def fit(cls, positions: torch.Tensor) -> TargetNorm:
        flat = positions.reshape(-1, 3).double()
        return cls(flat.mean(0).float(), flat.std(0).clamp_min(1e-6).float())

    def normalise(self, positions: torch.Tensor) -> torch.Tensor:
        return (positions - self.mean.to(positions.device)) / self.std.to(positions.device)

    def denormalise(self, values: torch.Tensor) -> torch.Tensor:
        return values * self.std.to(values.device) + self.mean.to(values.device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> TargetNorm:
        return cls(state["mean"], state["std"])


# The heads that regress normalised positions; their targets share one TargetNorm.
POSITION_HEADS = ("forecast", "track")


def task_losses(
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    weights: dict[str, float],
) -> dict[str, torch.Tensor]:
    """Each head's loss and their weighted sum under "loss".

    ``targets`` maps a head to its target: "classify" the labels, the position heads their
    normalised positions. ``weights`` holds the position heads' weights; the class counts 1.
    """
    losses: dict[str, torch.Tensor] = {}
    weighted: list[torch.Tensor] = []
    if "classify" in outputs:
        losses["classify_loss"] = F.cross_entropy(outputs["classify"].float(), targets["classify"])
        weighted.append(losses["classify_loss"])
    for head in POSITION_HEADS:
        if head in outputs:
            losses[f"{head}_loss"] = F.smooth_l1_loss(
                outputs[head].float(), targets[head], beta=HUBER_BETA
            )
            weighted.append(weights[head] * losses[f"{head}_loss"])
    losses["loss"] = torch.stack(weighted).sum()
    return losses
