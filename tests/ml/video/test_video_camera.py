from __future__ import annotations

import numpy as np
import pytest

from ml.video.camera import Camera


def test_look_at_target_projects_to_the_principal_point() -> None:
    camera = Camera.look_at(np.array([3.0, -2.0, 1.5]), np.array([0.2, 0.1, -0.3]), (24, 40), 50.0)
    uv, depth = camera.project(np.array([[0.2, 0.1, -0.3]]))
    np.testing.assert_allclose(uv[0], [20.0, 12.0], atol=1e-9)
    assert depth[0] == pytest.approx(np.linalg.norm([2.8, -2.1, 1.8]))


def test_rotation_is_orthonormal_and_extrinsics_map_world_to_camera() -> None:
    camera = Camera.orbit(5.0, 120.0, 20.0, (32, 32), 40.0, roll_deg=5.0)
    np.testing.assert_allclose(camera.rotation @ camera.rotation.T, np.eye(3), atol=1e-12)
    point = np.array([0.3, -0.4, 0.5])
    homogeneous = np.append(point, 1.0)
    np.testing.assert_allclose(camera.extrinsics @ homogeneous, camera.to_camera(point))


def test_world_up_points_up_in_the_image() -> None:
    camera = Camera.orbit(5.0, 45.0, 10.0, (32, 32), 40.0)
    (u_low, v_low), (u_high, v_high) = camera.project(np.array([[0, 0, 0.0], [0, 0, 1.0]]))[0]
    assert v_high < v_low
    assert u_high == pytest.approx(u_low, abs=1e-9)


def test_roll_rotates_the_image_about_its_centre() -> None:
    level = Camera.orbit(5.0, 0.0, 0.0, (32, 32), 40.0)
    rolled = Camera.orbit(5.0, 0.0, 0.0, (32, 32), 40.0, roll_deg=30.0)
    point = np.array([[0.0, 1.0, 0.5]])
    a = level.project(point)[0][0] - 16
    b = rolled.project(point)[0][0] - 16
    assert np.linalg.norm(a) == pytest.approx(np.linalg.norm(b))
    cos_angle = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    assert np.degrees(np.arccos(cos_angle)) == pytest.approx(30.0)


def test_focal_length_follows_the_field_of_view() -> None:
    camera = Camera.orbit(5.0, 0.0, 0.0, (32, 64), 90.0)
    assert camera.focal == pytest.approx(32.0)


def test_looking_along_up_is_rejected() -> None:
    with pytest.raises(ValueError, match="up"):
        Camera.look_at(np.array([0, 0, 5.0]), np.zeros(3), (8, 8), 40.0)
