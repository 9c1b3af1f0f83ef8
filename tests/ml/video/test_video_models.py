from __future__ import annotations

import pytest
import torch

from ml.video.configs import ModelConfig
from ml.video.models import VideoModel, build_model
from ml.video.models.slowfast import slow_start

BACKBONES = ["i3d", "slowfast"]


def tiny_model(backbone: str, heads: list[str] | None = None, horizon: int = 4) -> VideoModel:
    config = ModelConfig(backbone=backbone, width=8, heads=heads or ["classify", "forecast"])
    torch.manual_seed(0)
    return build_model(config, num_classes=4, horizon=horizon, observed=8).eval()


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("shape", [(2, 16, 3, 64, 64), (2, 12, 3, 32, 32), (1, 6, 3, 16, 16)])
def test_model_accepts_image_tensors(backbone: str, shape: tuple[int, ...]) -> None:
    with torch.no_grad():
        outputs = tiny_model(backbone)(torch.rand(shape))
    assert outputs["classify"].shape == (shape[0], 4)
    assert outputs["forecast"].shape == (shape[0], 4, 3)
    assert all(torch.isfinite(v).all() for v in outputs.values())


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("shape", [(2, 16, 2), (2, 16, 3)])
def test_model_rejects_coordinate_input(backbone: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="coordinates"):
        tiny_model(backbone)(torch.randn(shape))


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize(
    "shape",
    [
        (16, 3),  # one trajectory, unbatched
        (2, 16, 3, 1),  # coordinates with a trailing axis
        (2, 16, 3, 1, 1),  # coordinates dressed up as 1x1 "images"
        (2, 16, 2, 32, 32),  # wrong number of channels
        (2, 3, 16, 32, 32),  # channels-first (B, C, T, H, W) instead of (B, T, C, H, W)
    ],
)
def test_model_rejects_other_non_image_input(backbone: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        tiny_model(backbone)(torch.randn(shape))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_heads_can_be_chosen(backbone: str) -> None:
    video = torch.rand(2, 8, 3, 16, 16)
    with torch.no_grad():
        assert set(tiny_model(backbone, ["classify"])(video)) == {"classify"}
        forecast = tiny_model(backbone, ["forecast"], horizon=2)(video)
    assert set(forecast) == {"forecast"}
    assert forecast["forecast"].shape == (2, 2, 3)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_outputs_depend_on_the_latest_frame(backbone: str) -> None:
    # Forecasting needs where the object is now: changing only the last frame must matter.
    video = torch.zeros(1, 8, 3, 16, 16)
    video[0, :, :, 4, 4] = 1.0
    moved = video.clone()
    moved[0, -1] = 0.0
    moved[0, -1, :, 11, 11] = 1.0
    model = tiny_model(backbone)
    with torch.no_grad():
        a, b, again = (model(v)["forecast"] for v in (video, moved, video))
    assert torch.equal(a, again)
    assert not torch.equal(a, b)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_model_can_fit_a_small_batch(backbone: str) -> None:
    torch.manual_seed(1)
    video = torch.rand(8, 6, 3, 16, 16)
    labels = torch.arange(8) % 4
    model = tiny_model(backbone).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(model(video)["classify"], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


@pytest.mark.parametrize(
    ("frames", "alpha", "start"), [(12, 4, 3), (16, 4, 3), (8, 2, 1), (9, 4, 0)]
)
def test_slow_pathway_always_sees_the_latest_frame(frames: int, alpha: int, start: int) -> None:
    assert slow_start(frames, alpha) == start
    assert list(range(frames))[start::alpha][-1] == frames - 1
