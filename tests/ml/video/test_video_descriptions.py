"""The description scorer on hand-written descriptions, and the facts it checks against."""

from __future__ import annotations

import numpy as np
import pytest

from ml.video.coherence import coherence_rates, score_description
from ml.video.facts import Facts, direction_of, facts_of, prompt_lines, template_description
from ml.video.fitting import Fit, clip_tau, fit_family
from ml.video.trajectories import CLASS_NAMES, sample_trajectory

CIRCLE = Facts(
    shape="circular",
    direction="clockwise",
    scalars={"radius": 0.62, "turns per unit time": 1.55},
    vectors={"centre": (0.1, -0.2, 1.2)},
    forecast_end=(0.5, 0.1, 1.0),
)
LINE = Facts(
    shape="linear",
    direction="towards the camera",
    scalars={"speed": 1.84},
    vectors={"start": (0.3, 0.0, 0.9), "velocity": (0.2, -0.4, -1.78)},
    forecast_end=(0.44, -0.3, -0.4),
)

GOOD = [
    (CIRCLE, "The point circles clockwise around (0.10, -0.20, 1.20) with radius 0.62."),
    (CIRCLE, "Seen from the camera it goes round a circle of radius 0.62, clockwise, 1.55 turns."),
    (CIRCLE, "A circular path, radius about 0.6, turning clockwise."),  # within 5% of 0.62
    (LINE, "It moves in a straight line towards the camera at speed 1.84."),
    (LINE, "Linear motion toward the camera, speed 1.84, ending near (0.44, -0.30, -0.40)."),
]
BAD = [
    # (facts, text, the checks that must fail)
    (CIRCLE, "The point follows a helix of radius 0.62, turning clockwise.", {"shape"}),
    (CIRCLE, "It circles clockwise like a spiral, radius 0.62.", {"shape"}),
    (CIRCLE, "The point circles counter-clockwise with radius 0.62.", {"direction"}),
    (CIRCLE, "The point circles anticlockwise with radius 0.62.", {"direction"}),
    (CIRCLE, "The point circles with radius 0.62.", {"direction"}),
    (CIRCLE, "It circles clockwise, then counterclockwise, radius 0.62.", {"direction"}),
    (CIRCLE, "The point circles clockwise with radius 0.95.", {"numbers"}),
    (CIRCLE, "The point circles clockwise about its centre.", {"numbers"}),
    (CIRCLE, "The point circles clockwise, radius 0.62, at 3.70 turns.", {"numbers"}),
    (LINE, "It moves in a straight line away from the camera at speed 1.84.", {"direction"}),
    (LINE, "Straight line towards the camera, then away, speed 1.84.", {"direction"}),
    (LINE, "The point moves towards the camera at speed 1.84.", {"shape"}),
    (LINE, "A parabola towards the camera at 0.73 per second.", {"shape", "numbers"}),
    (LINE, "", {"shape", "direction", "numbers"}),
]


@pytest.mark.parametrize(("facts", "text"), GOOD)
def test_good_descriptions_are_coherent(facts: Facts, text: str) -> None:
    assert score_description(text, facts) == {
        "shape": True,
        "direction": True,
        "numbers": True,
        "coherent": True,
    }


@pytest.mark.parametrize(("facts", "text", "failing"), BAD)
def test_bad_descriptions_fail_exactly_the_broken_checks(
    facts: Facts, text: str, failing: set[str]
) -> None:
    scores = score_description(text, facts)
    assert {check for check in ("shape", "direction", "numbers") if not scores[check]} == failing
    assert scores["coherent"] is False


def test_coherence_rates() -> None:
    scores = [score_description(text, facts) for facts, text in GOOD[:2]]
    scores.append(score_description(*reversed(BAD[0][:2])))  # type: ignore[arg-type]
    rates = coherence_rates(scores)
    assert rates["coherent"] == pytest.approx(2 / 3)
    assert rates["shape"] == pytest.approx(2 / 3) and rates["numbers"] == 1.0
    assert coherence_rates([])["coherent"] is None


TAU = clip_tau(16)


@pytest.mark.parametrize("label", range(len(CLASS_NAMES)))
def test_template_states_its_facts_and_not_another_videos(label: int) -> None:
    rng = np.random.default_rng(label + 10)
    facts = []
    for _ in range(6):
        points = sample_trajectory(label, 16, rng).points
        fit = fit_family(CLASS_NAMES[label], points[:12], TAU[:12])
        facts.append(facts_of(fit, points[12:]))
    for own in facts:
        text = template_description(own, horizon=4)
        assert score_description(text, own)["coherent"], text
        assert all(
            f"{value:.2f}" in "\n".join(prompt_lines(own, 4)) for value in own.scalars.values()
        )
    # Another video's facts: its numbers differ, so this template does not fit them.
    assert not score_description(template_description(facts[0], 4), facts[1])["numbers"]


def test_direction_follows_the_camera_axes() -> None:
    def line(velocity: list[float]) -> Fit:
        return Fit("linear", {"position": np.zeros(3), "velocity": np.array(velocity)}, 0.0)

    assert direction_of(line([0.1, -2.0, 0.5])) == "up"  # camera y points down
    assert direction_of(line([0.1, 0.2, -0.5])) == "towards the camera"
    assert direction_of(line([-0.9, 0.2, 0.5])) == "left"
    ring = {"centre": np.zeros(3), "radius": np.array(1.0), "omega": np.array(9.0)}
    ring["phase"] = np.array(0.0)
    away = Fit("circular", {**ring, "normal": np.array([0.0, 0.0, 1.0])}, 0.0)
    towards = Fit("circular", {**ring, "normal": np.array([0.0, 0.0, -1.0])}, 0.0)
    assert direction_of(away) == "clockwise" and direction_of(towards) == "counterclockwise"
    parabola = {"position": np.zeros(3), "acceleration": np.array([0.0, 9.8, 0.0])}
    # A parabola's heading ignores the vertical, which goes up then down.
    heading = Fit("parabolic", {**parabola, "velocity": np.array([0.3, -3.0, -0.2])}, 0.0)
    assert direction_of(heading) == "right"
