"""Equation fits: exact recovery from noiseless tracks, sympy-parsable rendering, metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ml.video.equations import equation_metrics, parse_equation, render_equation
from ml.video.fitting import (
    COMPARED_PARAMS,
    Fit,
    clip_tau,
    fit_family,
    plane_basis,
    positions,
    relative_errors,
)
from ml.video.trajectories import CLASS_NAMES, sample_trajectory

TAU = clip_tau(16)[:12]  # the demo's observed frames
NORMAL = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])


def _ring_track(centre: np.ndarray, radius: float, omega: float, phase: float) -> np.ndarray:
    u, w = plane_basis(NORMAL)
    angle = omega * TAU + phase
    return centre + radius * (np.cos(angle)[:, None] * u + np.sin(angle)[:, None] * w)


KNOWN: dict[str, tuple[np.ndarray, dict[str, object]]] = {
    "linear": (
        np.array([0.1, -0.2, 0.3]) + TAU[:, None] * np.array([1.1, 0.4, -0.7]),
        {"position": [0.1, -0.2, 0.3], "velocity": [1.1, 0.4, -0.7]},
    ),
    "parabolic": (
        np.array([0.5, 0.0, -0.1])
        + TAU[:, None] * np.array([-1.2, 0.3, 2.0])
        + 0.5 * (TAU**2)[:, None] * np.array([0.2, 4.1, -0.6]),
        {
            "position": [0.5, 0.0, -0.1],
            "velocity": [-1.2, 0.3, 2.0],
            "acceleration": [0.2, 4.1, -0.6],
        },
    ),
    "circular": (
        _ring_track(np.array([0.2, 0.1, -0.3]), 0.7, 10.5, 0.9),
        {"centre": [0.2, 0.1, -0.3], "radius": 0.7, "omega": 10.5, "phase": 0.9, "normal": NORMAL},
    ),
    "helical": (
        _ring_track(np.array([-0.1, 0.3, 0.2]), 0.55, -9.4, -2.0) + 1.3 * TAU[:, None] * NORMAL,
        {
            "centre": [-0.1, 0.3, 0.2],
            "radius": 0.55,
            "omega": -9.4,
            "phase": -2.0,
            "normal": NORMAL,
            "climb": 1.3,
            "pitch": 2 * math.pi * 1.3 / 9.4,
        },
    ),
}


@pytest.mark.parametrize("family", CLASS_NAMES)
def test_fit_recovers_known_parameters_from_a_noiseless_track(family: str) -> None:
    track, expected = KNOWN[family]
    fit = fit_family(family, track, TAU)
    assert fit.rms < 1e-9
    assert set(fit.params) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(fit.params[name], value, atol=1e-9, err_msg=name)
    assert all(e < 1e-9 for e in relative_errors(fit, fit_family(family, track, TAU), 1.0).values())


def test_circle_seen_turning_the_other_way_flips_its_normal_not_its_speed() -> None:
    track = _ring_track(np.zeros(3), 0.7, -10.5, 0.9)
    fit = fit_family("circular", track, TAU)
    assert float(fit.params["omega"]) == pytest.approx(10.5)
    np.testing.assert_allclose(fit.params["normal"], -NORMAL, atol=1e-9)
    np.testing.assert_allclose(positions(fit, TAU), track, atol=1e-9)


@pytest.mark.parametrize("label", range(len(CLASS_NAMES)))
def test_fit_of_the_dataset_trajectories_reproduces_them(label: int) -> None:
    rng = np.random.default_rng(label)
    for _ in range(5):
        trajectory = sample_trajectory(label, 16, rng, phase=float(rng.choice([0, 1 / 3, 2 / 3])))
        fit = fit_family(CLASS_NAMES[label], trajectory.points[:12], TAU)
        assert fit.rms < 1e-9
        # The fit extrapolates: the unseen frames follow from the parameters alone.
        np.testing.assert_allclose(positions(fit, clip_tau(16)), trajectory.points, atol=1e-8)


@pytest.mark.parametrize("family", CLASS_NAMES)
def test_rendered_equation_parses_with_sympy_and_gives_the_track(family: str) -> None:
    track, _ = KNOWN[family]
    equation = render_equation(fit_family(family, track, TAU))
    values = parse_equation(equation, TAU)
    assert values is not None, equation
    # Four significant digits: the rendered curve is within rounding of the track.
    np.testing.assert_allclose(values, track, atol=5e-3)


@pytest.mark.parametrize(
    "text",
    [
        "p(t) = (0.1, 0.2, 0.3) + (1, 0, 0)*t",  # one vector, not three components
        "x(t) = 1 + t; y(t) = 2*t",  # a component missing
        "x(t) = 1 + t; y(t) = 2*t; z(t) = cos(",  # not an expression
        "x(t) = 1 + s; y(t) = 2*t; z(t) = 0",  # a symbol other than t
        "x(t) = 1/(t - t); y(t) = 2*t; z(t) = 0",  # not finite
        "a(t) = t; y(t) = t; z(t) = t",  # wrong component name
    ],
)
def test_malformed_equations_do_not_parse(text: str) -> None:
    assert parse_equation(text, TAU) is None


def test_relative_errors_per_parameter_kind() -> None:
    track, _ = KNOWN["circular"]
    truth = fit_family("circular", track, TAU)
    params = dict(truth.params)
    params["centre"] = truth.params["centre"] + np.array([0.15, 0.0, 0.0])
    params["radius"] = truth.params["radius"] * 1.05
    params["phase"] = truth.params["phase"] + 0.3
    guess = Fit("circular", params, 0.0)
    errors = relative_errors(guess, truth, diameter=1.5)
    assert errors["centre"] == pytest.approx(0.1)  # a position, relative to the diameter
    assert errors["radius"] == pytest.approx(0.05)
    assert errors["phase"] == pytest.approx(2 * math.sin(0.15))  # the chord on the unit circle
    assert errors["omega"] == errors["normal"] == 0.0
    wrong_class = relative_errors(fit_family("linear", track, TAU), truth, 1.5)
    assert set(wrong_class) == set(COMPARED_PARAMS["circular"])
    assert all(math.isinf(e) for e in wrong_class.values())


def test_equation_metrics_count_misclassified_videos_as_misses() -> None:
    circle, _ = KNOWN["circular"]
    truth = fit_family("circular", circle, TAU)
    right = relative_errors(truth, truth, 1.0)
    wrong = relative_errors(fit_family("linear", circle, TAU), truth, 1.0)
    equation = render_equation(truth)
    metrics = equation_metrics(
        [equation, equation, "not an equation"],
        [right, wrong, right],
        ["circular"] * 3,
        TAU,
    )
    assert metrics["equation_parse_rate"] == pytest.approx(2 / 3)
    assert metrics["equation_correct_rate"] == pytest.approx(1 / 3)
    assert metrics["param_within_10pct"]["circular.radius"] == pytest.approx(2 / 3)
    assert metrics["param_median_rel_error"]["circular.radius"] == 0.0
    assert "linear.velocity" not in metrics["param_within_10pct"]
