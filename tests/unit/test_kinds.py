"""Experiment kinds: a bad config is refused with every bad field named."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from orchestrator.errors import Invalid
from orchestrator.kinds import KINDS, get_kind, validate_config


def _refusal(kind: str, config: dict[str, Any]) -> Invalid:
    with pytest.raises(Invalid) as raised:
        validate_config(get_kind(kind), config)
    assert raised.value.status_code == 422
    return raised.value


def test_unknown_kind_names_the_field_and_the_known_kinds() -> None:
    with pytest.raises(Invalid) as raised:
        get_kind("nope")
    assert raised.value.message.startswith("kind: unknown kind 'nope'")
    assert all(name in raised.value.message for name in KINDS)
    assert raised.value.extra["errors"][0]["loc"] == ["body", "kind"]


@pytest.mark.parametrize(
    ("kind", "config", "fields"),
    [
        ("command", {}, ["config.command"]),
        ("command", {"command": ""}, ["config.command"]),
        ("command", {"command": "true", "bogus": 1}, ["config.bogus"]),
        ("command", {"command": "true", "env": {"A": 1}}, ["config.env.A"]),
        (
            "command",
            {"workdir": 5, "extra": True},
            ["config.command", "config.workdir", "config.extra"],
        ),
        ("demo.counter", {"steps": 0}, ["config.steps"]),
        ("demo.counter", {"step_seconds": -1}, ["config.step_seconds"]),
        ("demo.counter", {"checkpoint_every": "often"}, ["config.checkpoint_every"]),
    ],
)
def test_bad_config_names_every_bad_field(
    kind: str, config: dict[str, Any], fields: list[str]
) -> None:
    refusal = _refusal(kind, config)
    for field in fields:
        assert f"{field}:" in refusal.message, refusal.message
    locs = [".".join(e["loc"][1:]) for e in refusal.extra["errors"]]
    assert sorted(locs) == sorted(fields)
    assert all(e["loc"][0] == "body" for e in refusal.extra["errors"])


def test_valid_config_comes_back_normalised() -> None:
    assert validate_config(get_kind("demo.counter"), {}) == {
        "steps": 30,
        "step_seconds": 0.2,
        "checkpoint_every": 5,
        "fail_at_step": None,
    }
    assert validate_config(get_kind("command"), {"command": "echo hi"}) == {
        "command": "echo hi",
        "workdir": None,
        "env": {},
    }


def test_every_kind_entrypoint_exists() -> None:
    # A kind naming a module that is not there would be accepted and then fail on every worker.
    for kind in KINDS.values():
        if kind.entrypoint is not None:
            assert importlib.util.find_spec(kind.entrypoint) is not None, kind
    assert get_kind("command").entrypoint is None
