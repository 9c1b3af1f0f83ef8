"""Least-squares fits of a 3D track to one trajectory family, and the fitted parameters.

Time is the clip's own: tau = frame index / (clip frames - 1), so tau runs over [0, 1] for
the whole clip (the dataset's t in [phase, phase + 1] shifted to start at zero; the phase
is an augmentation the model never sees). Rates (velocity, angular velocity, climb) are
per unit of that time, like the dataset's equations.

Families (each position-like parameter is the point at tau = 0):

- linear: p(tau) = position + velocity * tau
- parabolic: p(tau) = position + velocity * tau + acceleration * tau^2 / 2
- circular: p(tau) = centre + radius * (cos(omega tau + phase) u + sin(omega tau + phase) w)
- helical: the circular motion plus climb * tau * axis, pitch = 2 pi climb / |omega|

A ring's plane basis is canonical, so fits of different tracks are comparable: u is the
camera x axis projected into the plane (y if x is nearly normal to it), w = normal x u. A
circle's normal is oriented so that omega > 0; a helix's axis points the way it climbs
(climb > 0) and the sign of omega is its handedness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ml.video.trajectories import CLASS_NAMES


@dataclass(frozen=True)
class Fit:
    family: str  # one of CLASS_NAMES
    params: dict[str, np.ndarray]  # name -> vector (3,) or scalar (0-d array)
    rms: float  # root-mean-square distance of the track from the fitted curve


def clip_tau(num_frames: int) -> np.ndarray:
    """The fitting time of every frame of a clip of ``num_frames``."""
    return np.linspace(0.0, 1.0, num_frames)


def plane_basis(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reference = np.eye(3)[0] if abs(normal[0]) < 0.9 else np.eye(3)[1]
    u = reference - (reference @ normal) * normal
    u /= np.linalg.norm(u)
    return u, np.cross(normal, u)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _polynomial(track: np.ndarray, tau: np.ndarray, degree: int) -> list[np.ndarray]:
    """Per-axis least-squares coefficients, lowest power first: [(3,), ...]."""
    design = np.vander(tau, degree + 1, increasing=True)
    coefficients, *_ = np.linalg.lstsq(design, track, rcond=None)
    return list(coefficients)


def _ring(
    track: np.ndarray, tau: np.ndarray, normal: np.ndarray
) -> tuple[np.ndarray, float, float, float, float]:
    """Circle in the plane normal to ``normal``: (axis point at tau=0, radius, omega,
    phase, climb along the normal per unit time)."""
    height = track @ normal
    climb, base = np.polyfit(tau, height, 1)
    u, w = plane_basis(normal)
    a, b = track @ u, track @ w
    # Kasa's algebraic circle fit: a^2 + b^2 + D a + E b + F = 0 is linear in D, E, F.
    design = np.stack([a, b, np.ones_like(a)], axis=1)
    (d, e, f), *_ = np.linalg.lstsq(design, -(a**2 + b**2), rcond=None)
    ca, cb = -d / 2, -e / 2
    radius = math.sqrt(max(ca**2 + cb**2 - f, 0.0))
    angles = np.unwrap(np.arctan2(b - cb, a - ca))
    omega, phase = np.polyfit(tau, angles, 1)
    phase = math.remainder(phase, 2 * math.pi)
    return ca * u + cb * w + base * normal, radius, float(omega), phase, float(climb)


def _ring_positions(params: dict[str, np.ndarray], tau: np.ndarray) -> np.ndarray:
    u, w = plane_basis(params["normal"])
    angle = float(params["omega"]) * tau + float(params["phase"])
    ring = float(params["radius"]) * (np.cos(angle)[:, None] * u + np.sin(angle)[:, None] * w)
    climb = float(params.get("climb", np.array(0.0)))
    return params["centre"] + ring + climb * tau[:, None] * params["normal"]


def positions(fit: Fit, tau: np.ndarray) -> np.ndarray:
    """The fitted curve at times ``tau``: (len(tau), 3)."""
    p = fit.params
    if fit.family == "linear":
        return p["position"] + tau[:, None] * p["velocity"]
    if fit.family == "parabolic":
        return (
            p["position"]
            + tau[:, None] * p["velocity"]
            + 0.5 * (tau**2)[:, None] * p["acceleration"]
        )
    return _ring_positions(p, tau)


def _circle(track: np.ndarray, tau: np.ndarray) -> dict[str, np.ndarray]:
    centred = track - track.mean(0)
    normal = np.linalg.svd(centred, full_matrices=False)[2][2]
    centre, radius, omega, phase, _ = _ring(track, tau, normal)
    if omega < 0:
        # The same circle seen from the other side of its plane turns the other way.
        normal = -normal
        centre, radius, omega, phase, _ = _ring(track, tau, normal)
    return {"centre": centre, "radius": radius, "omega": omega, "phase": phase, "normal": normal}


def _helix(track: np.ndarray, tau: np.ndarray) -> dict[str, np.ndarray]:
    # A helix's acceleration is perpendicular to its axis at every instant, and so are the
    # second differences of evenly spaced samples: the axis is their null direction.
    second = track[2:] - 2 * track[1:-1] + track[:-2]
    axis = np.linalg.svd(second, full_matrices=False)[2][2]
    if np.polyfit(tau, track @ axis, 1)[0] < 0:
        axis = -axis
    centre, radius, omega, phase, climb = _ring(track, tau, axis)
    return {
        "centre": centre,
        "radius": radius,
        "omega": omega,
        "phase": phase,
        "normal": axis,
        "climb": climb,
        "pitch": 2 * math.pi * climb / max(abs(omega), 1e-12),
    }


def fit_family(family: str, track: np.ndarray, tau: np.ndarray) -> Fit:
    """Least-squares fit of ``track`` (T, 3) sampled at ``tau`` (T,) to ``family``."""
    track = np.asarray(track, dtype=np.float64)
    if family == "linear":
        position, velocity = _polynomial(track, tau, 1)
        params = {"position": position, "velocity": velocity}
    elif family == "parabolic":
        position, velocity, half_acceleration = _polynomial(track, tau, 2)
        params = {"position": position, "velocity": velocity, "acceleration": 2 * half_acceleration}
    elif family == "circular":
        params = _circle(track, tau)
    elif family == "helical":
        params = _helix(track, tau)
    else:
        raise ValueError(f"unknown trajectory family {family!r}; expected one of {CLASS_NAMES}")
    arrays = {name: np.asarray(value, dtype=np.float64) for name, value in params.items()}
    fit = Fit(family, arrays, 0.0)
    residual = np.linalg.norm(positions(fit, tau) - track, axis=1)
    return Fit(family, arrays, float(np.sqrt((residual**2).mean())))


# How each parameter's error is made relative (see docs/ml-video.md, "Equations"):
# positions by the track's diameter, directions as unit vectors, the phase as a point on
# the unit circle, everything else by its own true magnitude.
POSITION_PARAMS = frozenset({"position", "centre"})
COMPARED_PARAMS = {
    "linear": ("position", "velocity"),
    "parabolic": ("position", "velocity", "acceleration"),
    "circular": ("centre", "radius", "omega", "phase", "normal"),
    "helical": ("centre", "radius", "omega", "phase", "normal", "pitch"),
}


def relative_errors(predicted: Fit, truth: Fit, diameter: float) -> dict[str, float]:
    """Each compared parameter's relative error; infinite when the families differ."""
    names = COMPARED_PARAMS[truth.family]
    if predicted.family != truth.family:
        return dict.fromkeys(names, math.inf)
    errors: dict[str, float] = {}
    for name in names:
        guess, true = predicted.params[name], truth.params[name]
        if name == "phase":
            gap = float(abs(np.exp(1j * guess) - np.exp(1j * true)))
        elif name in POSITION_PARAMS:
            gap = float(np.linalg.norm(guess - true)) / diameter
        else:
            gap = float(np.linalg.norm(guess - true)) / max(float(np.linalg.norm(true)), 1e-12)
        errors[name] = gap
    return errors
