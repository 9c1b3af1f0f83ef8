"""A pinhole camera: intrinsics K and a world-to-camera pose (R, t), OpenCV axes.

Camera axes: x right, y down, z forward. Pixel (row i, column j) covers [j, j+1) x [i, i+1)
in image coordinates, so a point projecting to (u, v) lands in pixel (floor(v), floor(u)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Camera:
    intrinsics: np.ndarray  # (3, 3)
    rotation: np.ndarray  # (3, 3) world -> camera
    translation: np.ndarray  # (3,)  world -> camera

    @classmethod
    def look_at(
        cls,
        eye: np.ndarray,
        target: np.ndarray,
        image_size: tuple[int, int],
        fov_deg: float,
        up: tuple[float, float, float] = (0.0, 0.0, 1.0),
        roll_deg: float = 0.0,
    ) -> Camera:
        """A camera at ``eye`` looking at ``target``; ``fov_deg`` is the horizontal view angle."""
        eye = np.asarray(eye, dtype=np.float64)
        forward = np.asarray(target, dtype=np.float64) - eye
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, np.asarray(up, dtype=np.float64))
        if np.linalg.norm(right) < 1e-9:
            raise ValueError("camera looks along its up vector; choose another up")
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        rotation = np.stack([right, down, forward])
        roll = math.radians(roll_deg)
        # Rolling the camera rotates its x/y axes about the optical axis.
        roll_matrix = np.array(
            [
                [math.cos(roll), math.sin(roll), 0.0],
                [-math.sin(roll), math.cos(roll), 0.0],
                [0.0, 0.0, 1.0],
            ]
        )
        rotation = roll_matrix @ rotation
        height, width = image_size
        focal = (width / 2) / math.tan(math.radians(fov_deg) / 2)
        intrinsics = np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
        return cls(intrinsics, rotation, -rotation @ eye)

    @classmethod
    def orbit(
        cls,
        distance: float,
        azimuth_deg: float,
        elevation_deg: float,
        image_size: tuple[int, int],
        fov_deg: float,
        roll_deg: float = 0.0,
    ) -> Camera:
        """A camera on a sphere of radius ``distance`` around the origin, looking at it."""
        az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
        eye = distance * np.array(
            [math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)]
        )
        return cls.look_at(eye, np.zeros(3), image_size, fov_deg, roll_deg=roll_deg)

    @property
    def focal(self) -> float:
        return float(self.intrinsics[0, 0])

    @property
    def extrinsics(self) -> np.ndarray:
        """The (3, 4) matrix [R | t]."""
        return np.concatenate([self.rotation, self.translation[:, None]], axis=1)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) in camera coordinates."""
        return points @ self.rotation.T + self.translation

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (..., 2) as (u, v) and depths (...,) of world points (..., 3)."""
        cam = self.to_camera(points)
        depth = cam[..., 2]
        # Points behind the camera get a non-finite position; renderers skip them.
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (cam[..., :2] / depth[..., None]) @ self.intrinsics[:2, :2].T
        return uv + self.intrinsics[:2, 2], depth
