"""Scoring a description against its facts, by program, without a human.

A description is coherent when it passes all three checks (docs/ml-video.md, "Descriptions"):

- shape: it names the facts' shape (a word of that class's vocabulary) and no other
  class's shape;
- direction: it names the facts' direction of motion and not the opposite one;
- numbers: it quotes the class's key quantity (speed, acceleration or radius), and every
  decimal number in it matches one of the facts' numbers (within 0.01 or 5%). Whole
  numbers such as "4 frames" are not read as claims.
"""

from __future__ import annotations

import re
from typing import Any

from ml.video.facts import CLOCKWISE, COUNTERCLOCKWISE, DIRECTION_WORDS, Facts

SHAPE_WORDS = {
    "linear": r"\b(linear(ly)?|straight)\b",
    "circular": r"\bcirc(le|les|ular|ling|led)\b",
    "helical": r"\b(heli(x|xes|ces|cal)|spiral(s|ing|led)?|corkscrew(s|ing)?)\b",
    "parabolic": r"\b(parabol(a|as|ic)|ballistic|projectile)\b",
}
COUNTER = r"\b(counter|anti)[- ]?clockwise\b"
# "clockwise" on its own: not the tail of "counter-clockwise"
CLOCKWISE_ONLY = r"(?<![-\w])clockwise\b"
DIRECTION_PATTERNS = {
    "right": r"\bright(wards?)?\b",
    "left": r"\bleft(wards?)?\b",
    "up": r"\b(up|upwards?|rising|rises)\b",
    "down": r"\b(down|downwards?|falling|falls)\b",
    "away from the camera": r"\baway\b",
    "towards the camera": r"\b(towards?|approach(es|ing)?)\b",
}
OPPOSITE = {
    DIRECTION_WORDS[(axis, sign)]: DIRECTION_WORDS[(axis, -sign)] for axis, sign in DIRECTION_WORDS
}
NUMBER = re.compile(r"(?<![\w.])-?\d+\.\d+")
ABS_TOLERANCE, REL_TOLERANCE = 0.01, 0.05
CHECKS = ("shape", "direction", "numbers", "coherent")


def _matches(value: float, target: float) -> bool:
    return abs(value - target) <= max(ABS_TOLERANCE, REL_TOLERANCE * abs(target))


def shape_ok(text: str, shape: str) -> bool:
    named = {name for name, pattern in SHAPE_WORDS.items() if re.search(pattern, text)}
    return named == {shape}


def direction_ok(text: str, direction: str) -> bool:
    if direction in (CLOCKWISE, COUNTERCLOCKWISE):
        counter = re.search(COUNTER, text) is not None
        plain = re.search(CLOCKWISE_ONLY, re.sub(COUNTER, "", text)) is not None
        return (counter and not plain) if direction == COUNTERCLOCKWISE else (plain and not counter)
    said = re.search(DIRECTION_PATTERNS[direction], text) is not None
    contradicted = re.search(DIRECTION_PATTERNS[OPPOSITE[direction]], text) is not None
    return said and not contradicted


def numbers_ok(text: str, facts: Facts) -> bool:
    quoted = [float(x) for x in NUMBER.findall(text)]
    allowed = facts.numbers()
    _, key = facts.key
    every_one_true = all(any(_matches(x, a) for a in allowed) for x in quoted)
    return every_one_true and any(_matches(x, key) for x in quoted)


def score_description(text: str, facts: Facts) -> dict[str, bool]:
    lowered = text.lower()
    scores = {
        "shape": shape_ok(lowered, facts.shape),
        "direction": direction_ok(lowered, facts.direction),
        "numbers": numbers_ok(lowered, facts),
    }
    scores["coherent"] = all(scores.values())
    return scores


def coherence_rates(scores: list[dict[str, bool]]) -> dict[str, Any]:
    """The share of descriptions passing each check; None for an empty list."""
    return {
        check: (sum(s[check] for s in scores) / len(scores) if scores else None) for check in CHECKS
    }
