"""A fit rendered as a symbolic equation, parsing it back with sympy, and equation metrics.

An equation is three components in the clip time t (the fit's tau), for example

    x(t) = 0.1 + 0.62*cos(9.7*t + 1.2) - 0.3*sin(9.7*t + 1.2); y(t) = ...; z(t) = ...

Numbers carry four significant digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from tokenize import TokenError
from typing import Any

import numpy as np
import torch

from ml.video.fitting import (
    COMPARED_PARAMS,
    Fit,
    clip_tau,
    fit_family,
    plane_basis,
    relative_errors,
)
from ml.video.splits import ForecastSplit
from ml.video.trajectories import CLASS_NAMES

AXES = ("x", "y", "z")
WITHIN = 0.1  # a parameter is "right" within 10% relative error
# Terms smaller than this are rounding noise of the fit (a basis vector's zero component).
NEGLIGIBLE = 1e-9


def _number(value: float) -> str:
    return f"{value:.4g}"


def _sum(terms: list[tuple[float, str]]) -> str:
    """``c0*f0 + c1*f1 ...`` with signs folded in; an empty factor is a constant term."""
    text = ""
    for coefficient, factor in terms:
        if abs(coefficient) < NEGLIGIBLE:
            continue
        magnitude = _number(abs(coefficient)) + (f"*{factor}" if factor else "")
        if not text:
            text = ("-" if coefficient < 0 else "") + magnitude
        else:
            text += (" - " if coefficient < 0 else " + ") + magnitude
    return text or "0"


def _component_terms(fit: Fit, axis: int) -> list[tuple[float, str]]:
    p = {name: np.asarray(value) for name, value in fit.params.items()}
    if fit.family in ("linear", "parabolic"):
        terms = [(float(p["position"][axis]), ""), (float(p["velocity"][axis]), "t")]
        if fit.family == "parabolic":
            terms.append((0.5 * float(p["acceleration"][axis]), "t**2"))
        return terms
    u, w = plane_basis(p["normal"])
    angle = f"({_sum([(float(p['omega']), 't'), (float(p['phase']), '')])})"
    radius = float(p["radius"])
    terms = [
        (float(p["centre"][axis]), ""),
        (radius * float(u[axis]), f"cos{angle}"),
        (radius * float(w[axis]), f"sin{angle}"),
    ]
    if "climb" in p:
        terms.append((float(p["climb"]) * float(p["normal"][axis]), "t"))
    return terms


def render_equation(fit: Fit) -> str:
    return "; ".join(f"{name}(t) = {_sum(_component_terms(fit, i))}" for i, name in enumerate(AXES))


def parse_equation(equation: str, tau: np.ndarray) -> np.ndarray | None:
    """The equation's positions at ``tau`` if sympy parses it as x, y, z in t alone and
    every value is finite; None otherwise."""
    import sympy
    from sympy.parsing.sympy_parser import parse_expr

    t = sympy.Symbol("t")
    parts = [part.split("=", 1) for part in equation.split(";")]
    if len(parts) != len(AXES) or any(len(part) != 2 for part in parts):
        return None
    columns = []
    for (lhs, rhs), name in zip(parts, AXES, strict=True):
        if lhs.strip() != f"{name}(t)":
            return None
        try:
            expression = parse_expr(rhs, local_dict={"t": t}, evaluate=True)
        except (SyntaxError, TokenError, TypeError, ValueError, sympy.SympifyError):
            return None
        if not isinstance(expression, sympy.Expr) or not expression.free_symbols <= {t}:
            return None
        if expression.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
            return None
        values = np.broadcast_to(
            np.asarray(sympy.lambdify(t, expression, "numpy")(tau), dtype=np.float64), tau.shape
        )
        columns.append(values)
    stacked = np.stack(columns, axis=1)
    return stacked if bool(np.isfinite(stacked).all()) else None


def equation_metrics(
    equations: list[str],
    errors: list[dict[str, float]],
    true_families: list[str],
    tau: np.ndarray,
) -> dict[str, Any]:
    """Parse rate and parameter accuracy over a split.

    ``errors[i]`` holds video i's relative errors (infinite where the class was wrong).
    A parameter's share within 10% counts every video of its true class, misclassified
    ones as misses; its median error is over the correctly classified ones.
    """
    parsed = [parse_equation(equation, tau) is not None for equation in equations]
    correct = [
        ok and all(e <= WITHIN for e in err.values())
        for ok, err in zip(parsed, errors, strict=True)
    ]
    metrics: dict[str, Any] = {
        "equation_parse_rate": _mean(parsed),
        "equation_correct_rate": _mean(correct),
    }
    within: dict[str, float] = {}
    median: dict[str, float | None] = {}
    for family, names in COMPARED_PARAMS.items():
        rows = [err for err, f in zip(errors, true_families, strict=True) if f == family]
        for name in names:
            values = np.array([row[name] for row in rows], dtype=np.float64)
            if len(values) == 0:
                continue
            key = f"{family}.{name}"
            within[key] = float((values <= WITHIN).mean())
            finite = values[np.isfinite(values)]
            # None, not infinity, where no video of the class was classified right: the
            # result must stay plain JSON.
            median[key] = float(np.median(finite)) if len(finite) else None
    metrics["param_within_10pct"] = within
    metrics["param_median_rel_error"] = median
    metrics["param_within_10pct_mean"] = _mean(list(within.values()))
    return metrics


def _mean(values: list[bool] | list[float]) -> float | None:
    return float(np.mean(values)) if values else None


@dataclass(frozen=True)
class VideoEquation:
    """One video's equation: the fit of the predicted class to the predicted track, and the
    ground truth it is judged against (the true class fitted to the true track)."""

    fit: Fit
    equation: str
    truth: Fit
    errors: dict[str, float]


def split_tau(split: ForecastSplit) -> np.ndarray:
    """The fitting time of the observed frames."""
    return clip_tau(split.data.videos.shape[1])[: split.observed]


def split_equations(
    split: ForecastSplit, predicted: torch.Tensor, track: torch.Tensor
) -> list[VideoEquation]:
    """Every video's equation from the model's class and track (camera coordinates)."""
    tau = split_tau(split)
    results = []
    for row in range(len(split)):
        fit = fit_family(CLASS_NAMES[int(predicted[row])], track[row].double().numpy(), tau)
        truth = fit_family(
            CLASS_NAMES[int(split.labels[row])], split.track[row].double().numpy(), tau
        )
        errors = relative_errors(fit, truth, float(split.scale[row]))
        results.append(VideoEquation(fit, render_equation(fit), truth, errors))
    return results


def split_equation_metrics(split: ForecastSplit, equations: list[VideoEquation]) -> dict[str, Any]:
    return equation_metrics(
        [e.equation for e in equations],
        [e.errors for e in equations],
        [CLASS_NAMES[int(label)] for label in split.labels],
        split_tau(split),
    )


def fit_json(fit: Fit) -> dict[str, Any]:
    """A fit as plain JSON: family, parameters rounded to 5 decimals, residual."""
    params = {name: np.round(value, 5).tolist() for name, value in fit.params.items()}
    return {"family": fit.family, "params": params, "rms": round(fit.rms, 6)}


def fit_from_json(data: dict[str, Any]) -> Fit:
    params = {name: np.asarray(value, dtype=np.float64) for name, value in data["params"].items()}
    return Fit(data["family"], params, float(data["rms"]))
