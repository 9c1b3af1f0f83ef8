"""Render a 3D trajectory as RGB video frames through a pinhole camera.

The moving object is a ball of fixed world radius drawn as a Gaussian blob whose width is
its projected radius, so apparent size carries depth: a monocular model can recover 3D.
"""

from __future__ import annotations

import numpy as np
import torch

from ml.video.camera import Camera
from ml.video.configs import Style

DOT_COLOUR = np.array([1.0, 0.9, 0.5], dtype=np.float32)
# A different colour lets a model tell the object from where it has been.
TRAIL_COLOUR = np.array([0.2, 0.5, 1.0], dtype=np.float32)
TRAIL_SUBSTEPS = 4
TRAIL_FADE = 0.75
TRAIL_BRIGHTNESS = 0.6
TRAIL_WIDTH = 0.6
NEAR_PLANE = 1e-3


def splat(uv: np.ndarray, sigma: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Unit-peak Gaussian blobs (N, H, W) at pixel positions uv (N, 2) with widths sigma (N,)."""
    height, width = image_size
    # Pixel centres sit at half-integer image coordinates.
    ys = np.arange(height, dtype=np.float32) + 0.5
    xs = np.arange(width, dtype=np.float32) + 0.5
    visible = np.isfinite(uv).all(axis=1) & (sigma > 0)
    u = np.where(visible, uv[:, 0], -1e6).astype(np.float32)
    v = np.where(visible, uv[:, 1], -1e6).astype(np.float32)
    s = np.where(visible, sigma, 1.0).astype(np.float32)
    gx = np.exp(-((xs[None, :] - u[:, None]) ** 2) / (2 * s[:, None] ** 2))
    gy = np.exp(-((ys[None, :] - v[:, None]) ** 2) / (2 * s[:, None] ** 2))
    return gy[:, :, None] * gx[:, None, :]


def _blobs(
    points: np.ndarray, camera: Camera, image_size: tuple[int, int], radius: float
) -> np.ndarray:
    uv, depth = camera.project(points)
    in_front = depth > NEAR_PLANE
    sigma = np.where(in_front, camera.focal * radius / np.where(in_front, depth, 1.0), 0.0)
    return splat(np.where(in_front[:, None], uv, np.nan), sigma, image_size)


def _trail(
    points: np.ndarray,
    camera: Camera,
    image_size: tuple[int, int],
    radius: float,
    trail_length: int,
) -> np.ndarray:
    """Per frame (T, H, W), the path of the last ``trail_length`` frames, fading with age."""
    num_frames = len(points)
    dense_t = np.linspace(0, num_frames - 1, (num_frames - 1) * TRAIL_SUBSTEPS + 1)
    dense = np.stack([np.interp(dense_t, np.arange(num_frames), points[:, k]) for k in range(3)])
    blobs = _blobs(dense.T, camera, image_size, radius * TRAIL_WIDTH)
    age = np.arange(num_frames)[:, None] - dense_t[None, :]
    weight = np.where(
        (age > 0) & (age <= trail_length), TRAIL_BRIGHTNESS * TRAIL_FADE**age, 0.0
    ).astype(np.float32)
    return (weight[:, :, None, None] * blobs[None]).max(axis=1)


def render_video(
    points: np.ndarray,
    camera: Camera,
    image_size: tuple[int, int],
    style: Style = "dot",
    ball_radius: float = 0.12,
    trail_length: int = 8,
) -> torch.Tensor:
    """Frames (T, 3, H, W) in [0, 1] of a ball following world points (T, 3)."""
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"expected world points of shape (T, 3), got {points.shape}")
    dot = _blobs(points, camera, image_size, ball_radius)
    frames = dot[:, None] * DOT_COLOUR[None, :, None, None]
    if style == "trail":
        trail = _trail(points, camera, image_size, ball_radius, trail_length)
        frames = np.maximum(frames, trail[:, None] * TRAIL_COLOUR[None, :, None, None])
    elif style != "dot":
        raise ValueError(f"unknown style {style!r}")
    return torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
