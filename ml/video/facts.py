"""What a description may say about one video: the branch's class, fit and forecast as facts.

The facts drive both the template description (the baseline) and the language model's
prompt, and they are what the coherence scorer checks a description against. Directions are
as seen from the filming camera (OpenCV axes: x right, y down, z away from the camera).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ml.video.fitting import Fit

# (axis, sign) -> the direction word
DIRECTION_WORDS = {
    (0, 1): "right",
    (0, -1): "left",
    (1, 1): "down",
    (1, -1): "up",
    (2, 1): "away from the camera",
    (2, -1): "towards the camera",
}
CLOCKWISE, COUNTERCLOCKWISE = "clockwise", "counterclockwise"
# The number a description must quote, by class.
KEY_QUANTITY = {
    "linear": "speed",
    "parabolic": "acceleration",
    "circular": "radius",
    "helical": "radius",
}


@dataclass(frozen=True)
class Facts:
    shape: str  # the predicted class
    direction: str  # a DIRECTION_WORDS value, or CLOCKWISE / COUNTERCLOCKWISE
    # Named values, rounded to two decimals as they are quoted.
    scalars: dict[str, float]
    vectors: dict[str, tuple[float, ...]]
    forecast_end: tuple[float, ...]  # where the forecast ends

    @property
    def key(self) -> tuple[str, float]:
        name = KEY_QUANTITY[self.shape]
        return name, self.scalars[name]

    def numbers(self) -> list[float]:
        """Every number a description may quote."""
        values = [*self.scalars.values(), *self.forecast_end]
        for vector in self.vectors.values():
            values.extend(vector)
        return values


def _dominant(vector: np.ndarray, axes: tuple[int, ...] = (0, 1, 2)) -> str:
    axis = max(axes, key=lambda a: abs(float(vector[a])))
    return DIRECTION_WORDS[(axis, 1 if vector[axis] >= 0 else -1)]


def _round(vector: np.ndarray) -> tuple[float, ...]:
    return tuple(round(float(x), 2) for x in vector)


def direction_of(fit: Fit) -> str:
    """The direction of motion a description must name, by class.

    linear: the way it moves; parabolic: its heading across or along the line of sight (the
    vertical is up then down); circular: the sense of rotation seen from the camera; helical:
    the way it climbs.
    """
    p = fit.params
    if fit.family == "linear":
        return _dominant(p["velocity"])
    if fit.family == "parabolic":
        return _dominant(p["velocity"], axes=(0, 2))
    if fit.family == "circular":
        # With omega > 0 the point turns right-handed about the normal; the camera looks
        # along +z with y down, so a normal pointing away from it reads as clockwise.
        return CLOCKWISE if p["normal"][2] > 0 else COUNTERCLOCKWISE
    return _dominant(p["normal"])


def facts_of(fit: Fit, forecast: np.ndarray) -> Facts:
    """The facts of a fit and the forecast positions (horizon, 3)."""
    p = fit.params
    if fit.family in ("linear", "parabolic"):
        vectors = {"start": _round(p["position"]), "velocity": _round(p["velocity"])}
        scalars = {"speed": float(np.linalg.norm(p["velocity"]))}
        if fit.family == "parabolic":
            scalars["acceleration"] = float(np.linalg.norm(p["acceleration"]))
    else:
        vectors = {"centre": _round(p["centre"])}
        scalars = {
            "radius": float(p["radius"]),
            "turns per unit time": abs(float(p["omega"])) / (2 * math.pi),
        }
        if fit.family == "helical":
            scalars["pitch"] = float(p["pitch"])
    rounded = {name: round(value, 2) for name, value in scalars.items()}
    return Facts(fit.family, direction_of(fit), rounded, vectors, _round(forecast[-1]))


def _vector(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{x:.2f}" for x in values) + ")"


def template_description(facts: Facts, horizon: int) -> str:
    """The deterministic baseline: one sentence that states the facts."""
    q, v = facts.scalars, facts.vectors
    ending = f"; {horizon} frames on it reaches {_vector(facts.forecast_end)}."
    if facts.shape == "linear":
        return (
            f"The point moves in a straight line {facts.direction} at speed {q['speed']:.2f}"
            f" from {_vector(v['start'])}" + ending
        )
    if facts.shape == "parabolic":
        return (
            f"The point follows a parabolic arc heading {facts.direction} with acceleration"
            f" {q['acceleration']:.2f} and launch speed {q['speed']:.2f}" + ending
        )
    turns = f"{q['turns per unit time']:.2f} turns per unit time"
    if facts.shape == "circular":
        return (
            f"The point moves {facts.direction} on a circular path of radius {q['radius']:.2f}"
            f" about {_vector(v['centre'])} at {turns}" + ending
        )
    return (
        f"The point follows a helix of radius {q['radius']:.2f} climbing {facts.direction}"
        f" with pitch {q['pitch']:.2f} at {turns}" + ending
    )


def prompt_lines(facts: Facts, horizon: int) -> list[str]:
    """The facts as the lines a language model is given."""
    lines = [f"shape: {facts.shape}", f"direction: {facts.direction}"]
    lines += [f"{name}: {_vector(value)}" for name, value in facts.vectors.items()]
    lines += [f"{name}: {value:.2f}" for name, value in facts.scalars.items()]
    lines.append(f"position {horizon} frames later: {_vector(facts.forecast_end)}")
    return lines
