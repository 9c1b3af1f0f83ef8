from __future__ import annotations

import re

import numpy as np
import pytest

from ml.video.trajectories import (
    CENTRE_SPREAD,
    CLASS_NAMES,
    DIAMETER_RANGE,
    clip_times,
    sample_trajectory,
    trajectory_scale,
)

FRAMES = 16


def evaluate_equation(equation: str, t: np.ndarray) -> np.ndarray:
    """Evaluate a printed equation "p(t) = ..., t in [a, b]" at times t."""
    expression = equation.split("=", 1)[1].rsplit(", t in", 1)[0]
    expression = re.sub(
        r"\(([-\d.]+), ([-\d.]+), ([-\d.]+)\)", r"np.array([\1, \2, \3])", expression
    )
    expression = expression.replace("^", "**").replace("cos", "np.cos").replace("sin", "np.sin")
    # The text is our own generator's output, so eval is safe here.
    return np.stack([eval(expression, {"np": np, "t": x}) for x in t])


@pytest.mark.parametrize("label", range(len(CLASS_NAMES)))
@pytest.mark.parametrize("phase", [0.0, 2 / 3])
def test_equation_reproduces_the_points(label: int, phase: float) -> None:
    trajectory = sample_trajectory(label, FRAMES, np.random.default_rng(label), phase)
    assert trajectory.points.shape == (FRAMES, 3)
    assert f"t in [{phase:.2f}, {phase + 1:.2f}]" in trajectory.equation
    # The equation prints two decimals, so it matches to within rounding.
    recomputed = evaluate_equation(trajectory.equation, clip_times(FRAMES, phase))
    np.testing.assert_allclose(recomputed, trajectory.points, atol=0.06)
    assert trajectory.description.startswith(f"A {CLASS_NAMES[label]} trajectory")


def test_linear_points_are_evenly_spaced_on_a_line() -> None:
    points = sample_trajectory(0, FRAMES, np.random.default_rng(1)).points
    steps = np.diff(points, axis=0)
    np.testing.assert_allclose(steps, np.broadcast_to(steps[0], steps.shape), atol=1e-12)


def test_circular_points_lie_on_a_circle() -> None:
    points = sample_trajectory(1, FRAMES, np.random.default_rng(2)).points
    # The circle's plane: its normal is orthogonal to every chord.
    chords = points[1:] - points[0]
    normal = np.linalg.svd(chords)[2][-1]
    np.testing.assert_allclose(chords @ normal, 0.0, atol=1e-9)
    # Equal speed means equal chords between consecutive frames.
    lengths = np.linalg.norm(np.diff(points, axis=0), axis=1)
    np.testing.assert_allclose(lengths, lengths[0], rtol=1e-9)


def test_helical_points_climb_steadily_along_an_axis() -> None:
    points = sample_trajectory(2, FRAMES, np.random.default_rng(3)).points
    lengths = np.linalg.norm(np.diff(points, axis=0), axis=1)
    np.testing.assert_allclose(lengths, lengths[0], rtol=1e-9)
    # Not planar, unlike a circle.
    chords = points[1:] - points[0]
    assert np.linalg.svd(chords, compute_uv=False)[-1] > 0.05


def test_parabolic_points_accelerate_straight_down() -> None:
    points = sample_trajectory(3, FRAMES, np.random.default_rng(4)).points
    second = np.diff(points, n=2, axis=0)
    np.testing.assert_allclose(second[:, :2], 0.0, atol=1e-12)
    np.testing.assert_allclose(second[:, 2], second[0, 2], atol=1e-12)
    assert second[0, 2] < 0


@pytest.mark.parametrize("label", range(len(CLASS_NAMES)))
def test_trajectories_have_a_bounded_size_near_the_origin(label: int) -> None:
    rng = np.random.default_rng(10 + label)
    for _ in range(20):
        points = sample_trajectory(label, FRAMES, rng, float(rng.choice([0, 1 / 3, 2 / 3]))).points
        low, high = DIAMETER_RANGE
        assert low - 1e-9 <= trajectory_scale(points) <= high + 1e-9
        assert np.abs(points.mean(axis=0)).max() <= CENTRE_SPREAD + 1e-9


def test_random_parameters_differ_between_draws() -> None:
    rng = np.random.default_rng(0)
    a, b = (sample_trajectory(1, FRAMES, rng) for _ in range(2))
    assert not np.allclose(a.points, b.points)
    assert a.equation != b.equation


def test_trajectory_scale_is_the_diameter() -> None:
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0.0]])
    assert trajectory_scale(square) == pytest.approx(np.sqrt(2))
    batch = np.stack([square, 3 * square])
    np.testing.assert_allclose(trajectory_scale(batch), [np.sqrt(2), 3 * np.sqrt(2)])
