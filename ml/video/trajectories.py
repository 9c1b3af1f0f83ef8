"""Random 3D trajectories of four classes, each with its symbolic equation and a description.

A clip samples the time window t in [phase, phase + 1] at num_frames evenly spaced instants.
Every trajectory is rescaled to a random diameter and centred near the origin so that it
stays in view of a camera aimed at the origin; the printed equation is the rescaled one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

CLASS_NAMES = ("linear", "circular", "helical", "parabolic")
DIAMETER_RANGE = (1.2, 2.0)
CENTRE_SPREAD = 0.25
TURNS_RANGE = (1.4, 1.9)  # turns per unit time of circles and helices
CLIMB_RANGE = (1.5, 2.5)  # a helix's climb per unit time, in radii


class Motion(Protocol):
    """Shape of a trajectory about an offset: p(t) = offset + shape(t)."""

    def shape(self, t: np.ndarray) -> np.ndarray: ...
    def scaled(self, factor: float) -> Motion: ...
    def equation(self, offset: np.ndarray) -> str: ...
    def describe(self, offset: np.ndarray) -> str: ...


def _vec(v: np.ndarray) -> str:
    return "(" + ", ".join(f"{x:.2f}" for x in v) + ")"


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _orthonormal_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    u = _unit(rng)
    w = np.cross(u, _unit(rng))
    return u, w / np.linalg.norm(w)


@dataclass(frozen=True)
class Linear:
    velocity: np.ndarray

    def shape(self, t: np.ndarray) -> np.ndarray:
        return t[:, None] * self.velocity

    def scaled(self, factor: float) -> Linear:
        return Linear(self.velocity * factor)

    def equation(self, offset: np.ndarray) -> str:
        return f"p(t) = {_vec(offset)} + {_vec(self.velocity)}*t"

    def describe(self, offset: np.ndarray) -> str:
        speed = float(np.linalg.norm(self.velocity))
        return f"moves in a straight line at constant speed {speed:.2f} through {_vec(offset)}"


@dataclass(frozen=True)
class Circular:
    radius: float
    omega: float  # radians per unit time; the sign gives the direction
    theta: float
    u: np.ndarray
    w: np.ndarray

    def shape(self, t: np.ndarray) -> np.ndarray:
        angle = self.omega * t + self.theta
        return self.radius * (np.cos(angle)[:, None] * self.u + np.sin(angle)[:, None] * self.w)

    def scaled(self, factor: float) -> Circular:
        return Circular(self.radius * factor, self.omega, self.theta, self.u, self.w)

    def ring(self) -> str:
        return (
            f"{self.radius:.2f}*(cos({self.omega:.2f}*t + {self.theta:.2f})*{_vec(self.u)}"
            f" + sin({self.omega:.2f}*t + {self.theta:.2f})*{_vec(self.w)})"
        )

    def equation(self, offset: np.ndarray) -> str:
        return f"p(t) = {_vec(offset)} + {self.ring()}"

    def describe(self, offset: np.ndarray) -> str:
        turns = abs(self.omega) / (2 * math.pi)
        return (
            f"circles the centre {_vec(offset)} with radius {self.radius:.2f}"
            f" at {turns:.2f} turns per unit time"
        )


@dataclass(frozen=True)
class Helical:
    circle: Circular
    climb: float  # signed distance along u x w per unit time

    @property
    def direction(self) -> np.ndarray:
        """The unit vector the helix climbs along."""
        return np.sign(self.climb) * np.cross(self.circle.u, self.circle.w)

    def shape(self, t: np.ndarray) -> np.ndarray:
        return self.circle.shape(t) + abs(self.climb) * t[:, None] * self.direction

    def scaled(self, factor: float) -> Helical:
        return Helical(self.circle.scaled(factor), self.climb * factor)

    def equation(self, offset: np.ndarray) -> str:
        climb = f"{abs(self.climb):.2f}*t*{_vec(self.direction)}"
        return f"p(t) = {_vec(offset)} + {self.circle.ring()} + {climb}"

    def describe(self, offset: np.ndarray) -> str:
        turns = abs(self.circle.omega) / (2 * math.pi)
        return (
            f"spirals along the axis {_vec(self.direction)} with radius {self.circle.radius:.2f},"
            f" {turns:.2f} turns and climb {abs(self.climb):.2f} per unit time"
        )


@dataclass(frozen=True)
class Parabolic:
    velocity: np.ndarray
    gravity: float  # downward (-z) acceleration

    def shape(self, t: np.ndarray) -> np.ndarray:
        drop = np.array([0.0, 0.0, -0.5 * self.gravity])
        return t[:, None] * self.velocity + (t**2)[:, None] * drop

    def scaled(self, factor: float) -> Parabolic:
        return Parabolic(self.velocity * factor, self.gravity * factor)

    def equation(self, offset: np.ndarray) -> str:
        return (
            f"p(t) = {_vec(offset)} + {_vec(self.velocity)}*t"
            f" + 0.5*(0.00, 0.00, {-self.gravity:.2f})*t^2"
        )

    def describe(self, offset: np.ndarray) -> str:
        return (
            f"flies a ballistic arc under gravity {self.gravity:.2f} from {_vec(offset)}"
            f" with launch velocity {_vec(self.velocity)}"
        )


def _random_motion(label: int, rng: np.random.Generator) -> Motion:
    # Shapes are drawn at unit-ish size; sample_trajectory rescales them afterwards.
    name = CLASS_NAMES[label]
    if name == "linear":
        return Linear(_unit(rng))
    if name in ("circular", "helical"):
        u, w = _orthonormal_pair(rng)
        # Over a full turn within the observed frames: a circle visibly closes on itself,
        # which is what tells it from a helix seen at an angle.
        omega = float(rng.choice([-1, 1]) * 2 * math.pi * rng.uniform(*TURNS_RANGE))
        circle = Circular(1.0, omega, float(rng.uniform(0, 2 * math.pi)), u, w)
        if name == "circular":
            return circle
        return Helical(circle, float(rng.choice([-1, 1]) * rng.uniform(*CLIMB_RANGE)))
    if name == "parabolic":
        heading = rng.uniform(0, 2 * math.pi)
        gravity = float(rng.uniform(3.0, 6.0))
        # The apex falls inside the unit window before any phase shift.
        vertical = gravity * rng.uniform(0.3, 0.7)
        horizontal = rng.uniform(0.8, 1.6)
        velocity = np.array(
            [horizontal * math.cos(heading), horizontal * math.sin(heading), vertical]
        )
        return Parabolic(velocity, gravity)
    raise ValueError(f"unknown trajectory class {label}")


def trajectory_scale(points: np.ndarray) -> np.ndarray:
    """The diameter (largest distance between two points) of trajectories (..., T, 3)."""
    diff = points[..., :, None, :] - points[..., None, :, :]
    return np.sqrt((diff**2).sum(-1)).max(axis=(-2, -1))


@dataclass(frozen=True)
class Trajectory:
    label: int
    points: np.ndarray  # (T, 3) world coordinates
    equation: str
    description: str


def clip_times(num_frames: int, phase: float) -> np.ndarray:
    return phase + np.linspace(0.0, 1.0, num_frames)


def sample_trajectory(
    label: int, num_frames: int, rng: np.random.Generator, phase: float = 0.0
) -> Trajectory:
    """A random trajectory of class ``label`` over the window [phase, phase + 1]."""
    t = clip_times(num_frames, phase)
    motion = _random_motion(label, rng)
    shape = motion.shape(t)
    motion = motion.scaled(rng.uniform(*DIAMETER_RANGE) / float(trajectory_scale(shape)))
    shape = motion.shape(t)
    centre = rng.uniform(-CENTRE_SPREAD, CENTRE_SPREAD, size=3)
    offset = centre - shape.mean(axis=0)
    window = f"t in [{phase:.2f}, {phase + 1:.2f}]"
    return Trajectory(
        label=label,
        points=offset + shape,
        equation=f"{motion.equation(offset)}, {window}",
        description=f"A {CLASS_NAMES[label]} trajectory: the point {motion.describe(offset)}.",
    )
