"""Capability classes (which ready set an experiment lands in) and the ready-set score."""

from __future__ import annotations

import pytest

from orchestrator.dispatch.capability import Capability, Requirement, capability_class
from orchestrator.dispatch.queue import MAX_PRIORITY, ready_score


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({}, Requirement()),
        ({"gpu": True}, Requirement(gpu=True)),
        # Asking for GPU memory is asking for a GPU, even with gpu left false.
        ({"gpu": False, "min_gpu_memory_gb": 24}, Requirement(gpu=True, min_gpu_memory_mb=24576)),
        ({"min_gpu_memory_gb": 0.5}, Requirement(gpu=True, min_gpu_memory_mb=512)),
        (
            {"gpu": True, "platforms": ["kaggle", "colab"]},
            Requirement(gpu=True, platforms=("colab", "kaggle")),
        ),
        ({"platforms": None, "min_gpu_memory_gb": None}, Requirement()),
    ],
)
def test_requirement_from_resources(resources: dict[str, object], expected: Requirement) -> None:
    assert Requirement.from_resources(resources) == expected


@pytest.mark.parametrize(
    ("requirement", "name"),
    [
        (Requirement(), "cpu"),
        (Requirement(gpu=True), "gpu"),
        (Requirement(gpu=True, min_gpu_memory_mb=24576), "gpu.mem24576"),
        (Requirement(gpu=True, platforms=("colab", "kaggle")), "gpu.on-colab+kaggle"),
        (Requirement(platforms=("mac",)), "cpu.on-mac"),
        (
            Requirement(gpu=True, min_gpu_memory_mb=16384, platforms=("kaggle",)),
            "gpu.mem16384.on-kaggle",
        ),
    ],
)
def test_capability_class_names(requirement: Requirement, name: str) -> None:
    assert capability_class(requirement) == name


def test_same_needs_share_a_class_whatever_the_spelling() -> None:
    a = Requirement.from_resources({"gpu": True, "platforms": ["kaggle", "colab"]})
    b = Requirement.from_resources(
        {"min_gpu_memory_gb": 0, "gpu": 1, "platforms": ["colab", "kaggle"]}
    )
    assert capability_class(a) == capability_class(b)
    assert a.to_json() == b.to_json()


@pytest.mark.parametrize(
    "requirement",
    [Requirement(), Requirement(gpu=True, min_gpu_memory_mb=8192, platforms=("colab", "kaggle"))],
)
def test_requirement_json_round_trip(requirement: Requirement) -> None:
    assert Requirement.from_json(requirement.to_json()) == requirement
    assert Requirement.from_json(requirement.to_json().encode()) == requirement


T4 = Capability(platform="colab", gpu_count=1, gpu_memory_mb=15 * 1024)
A100 = Capability(platform="kaggle", gpu_count=1, gpu_memory_mb=80 * 1024)
CPU = Capability(platform="local")


@pytest.mark.parametrize(
    ("capability", "requirement", "fits"),
    [
        (CPU, Requirement(), True),
        (T4, Requirement(), True),  # a GPU worker also runs CPU jobs
        (CPU, Requirement(gpu=True), False),
        (T4, Requirement(gpu=True), True),
        (T4, Requirement(gpu=True, min_gpu_memory_mb=16 * 1024), False),
        (A100, Requirement(gpu=True, min_gpu_memory_mb=16 * 1024), True),
        (A100, Requirement(gpu=True, min_gpu_memory_mb=80 * 1024), True),  # the bound is inclusive
        (T4, Requirement(platforms=("kaggle",)), False),
        (A100, Requirement(platforms=("colab", "kaggle")), True),
        # Memory without a GPU count (a mis-described host) still is not a GPU.
        (Capability(gpu_count=0, gpu_memory_mb=80 * 1024), Requirement(gpu=True), False),
    ],
)
def test_capability_satisfies(capability: Capability, requirement: Requirement, fits: bool) -> None:
    assert capability.satisfies(requirement) is fits


def test_ready_score_orders_priority_first_then_age() -> None:
    t = 1_700_000_000_000  # a realistic epoch-ms
    entries = {
        "old-low": ready_score(0, t),
        "new-low": ready_score(0, t + 1),
        "old-mid": ready_score(50, t),
        "new-high": ready_score(MAX_PRIORITY, t + 10**9),
        "old-high": ready_score(MAX_PRIORITY, t),
    }
    # Redis pops the lowest score first.
    assert sorted(entries, key=entries.__getitem__) == [
        "old-high",
        "new-high",
        "old-mid",
        "old-low",
        "new-low",
    ]


def test_ready_score_priority_beats_any_age() -> None:
    # A job queued far in the future (year ~2286) at priority p+1 still goes before one at p.
    far_future_ms = 10**13 - 1
    assert ready_score(1, far_future_ms) < ready_score(0, 0)


def test_ready_scores_are_exact_in_a_redis_double() -> None:
    # Redis stores scores as doubles: above 2**53 neighbouring timestamps would collide.
    worst = ready_score(0, 10**13 - 1)
    assert worst < 2**53
    assert float(worst) != float(worst - 1)
