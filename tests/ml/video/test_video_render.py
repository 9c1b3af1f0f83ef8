from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ml.video.camera import Camera
from ml.video.render import DOT_COLOUR, TRAIL_COLOUR, render_video

SIZE = (32, 32)


def front_camera(**kwargs: float) -> Camera:
    return Camera.orbit(5.0, 0.0, 0.0, SIZE, 40.0, **kwargs)


def brightest_pixel(frame: torch.Tensor) -> tuple[int, int]:
    flat = int(frame.sum(0).argmax())
    return divmod(flat, frame.shape[-1])


def test_renders_rgb_frames_not_coordinates() -> None:
    points = np.linspace([-0.5, 0.0, 0.0], [0.5, 0.3, 0.2], 10)
    video = render_video(points, front_camera(), SIZE)
    assert isinstance(video, torch.Tensor)
    assert video.shape == (10, 3, 32, 32)
    assert video.dtype == torch.float32
    assert float(video.min()) >= 0.0 and float(video.max()) <= 1.0
    # Each frame holds a visible object and mostly background.
    assert (video.amax(dim=(1, 2, 3)) > 0.5).all()
    assert float((video.sum(1) > 0.05).float().mean()) < 0.1


def test_rejects_points_that_are_not_a_3d_sequence() -> None:
    with pytest.raises(ValueError, match=r"\(T, 3\)"):
        render_video(np.zeros((10, 2)), front_camera(), SIZE)


def test_point_appears_where_the_camera_projects_it() -> None:
    camera = Camera.orbit(5.0, 30.0, 25.0, SIZE, 40.0, roll_deg=5.0)
    rng = np.random.default_rng(0)
    points = rng.uniform(-1.0, 1.0, size=(20, 3))
    uv, _ = camera.project(points)
    assert ((uv >= 0) & (uv < 32)).all(), "test points should be in view"
    video = render_video(points, camera, SIZE)
    for frame, (u, v) in zip(video, uv, strict=True):
        assert brightest_pixel(frame) == (math.floor(v), math.floor(u))


def test_origin_projects_to_the_image_centre() -> None:
    video = render_video(np.zeros((1, 3)), front_camera(), SIZE)
    row, col = brightest_pixel(video[0])
    assert {row, col} <= {15, 16}


def test_different_trajectories_give_different_frames() -> None:
    t = np.linspace(0, 1, 8)[:, None]
    line = t * np.array([1.0, 0.0, 0.0])
    arc = np.concatenate([np.cos(3 * t), np.sin(3 * t), 0 * t], axis=1) - [1.0, 0.0, 0.0]
    a = render_video(line, front_camera(), SIZE)
    b = render_video(arc, front_camera(), SIZE)
    assert float((a - b).abs().mean()) > 1e-3


@pytest.mark.parametrize(
    "other",
    [
        Camera.orbit(5.0, 90.0, 0.0, SIZE, 40.0),  # another viewpoint
        Camera.orbit(5.0, 0.0, 0.0, SIZE, 40.0, roll_deg=30.0),  # rolled
        Camera.orbit(5.0, 0.0, 0.0, SIZE, 60.0),  # wider lens
        Camera.orbit(3.0, 0.0, 0.0, SIZE, 40.0),  # closer
    ],
)
def test_camera_parameters_change_the_picture(other: Camera) -> None:
    points = np.linspace([-0.6, 0.4, -0.3], [0.7, -0.2, 0.5], 6)
    a = render_video(points, front_camera(), SIZE)
    b = render_video(points, other, SIZE)
    assert float((a - b).abs().mean()) > 1e-3


def test_nearer_ball_looks_bigger() -> None:
    # The camera looks along -x from x = 5: x = 1 is nearer than x = -1.
    near = render_video(np.array([[1.0, 0.0, 0.0]]), front_camera(), SIZE)
    far = render_video(np.array([[-1.0, 0.0, 0.0]]), front_camera(), SIZE)
    assert float(near.sum()) > 1.5 * float(far.sum())


def test_points_behind_the_camera_are_not_drawn() -> None:
    video = render_video(np.array([[10.0, 0.0, 0.0]]), front_camera(), SIZE)
    assert float(video.abs().max()) == 0.0


def test_trail_style_shows_where_the_object_has_been() -> None:
    camera = front_camera()
    points = np.linspace([0.0, -1.0, 0.0], [0.0, 1.0, 0.0], 8)
    dot = render_video(points, camera, SIZE, style="dot")
    trail = render_video(points, camera, SIZE, style="trail")
    uv, _ = camera.project(points)
    u0, v0 = uv[0]
    first = (math.floor(v0), math.floor(u0))
    # In the last frame the first position is dark for "dot" but lit in the trail's colour.
    assert float(dot[-1, :, first[0], first[1]].max()) < 0.01
    lit = trail[-1, :, first[0], first[1]]
    assert float(lit.max()) > 0.05
    expected = torch.from_numpy(TRAIL_COLOUR / np.linalg.norm(TRAIL_COLOUR))
    assert torch.allclose(lit / lit.norm(), expected, atol=1e-3)
    # The current position keeps the object's colour.
    row, col = brightest_pixel(trail[-1])
    current = trail[-1, :, row, col]
    assert torch.allclose(
        current / current.norm(),
        torch.from_numpy(DOT_COLOUR / np.linalg.norm(DOT_COLOUR)),
        atol=0.05,
    )


def test_unknown_style_is_rejected() -> None:
    with pytest.raises(ValueError, match="style"):
        render_video(np.zeros((2, 3)), front_camera(), SIZE, style="glow")  # type: ignore[arg-type]
