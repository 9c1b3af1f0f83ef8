"""The precision decision per device, and the allocator setting made before CUDA starts."""

from __future__ import annotations

import os

import pytest
import torch

from ml.common.precision import (
    Precision,
    choose_precision,
    device_precision,
    enable_expandable_segments,
)


@pytest.mark.parametrize(
    ("device_type", "capability", "dtype", "scaler"),
    [
        ("cuda", (6, 0), torch.float16, True),  # P100 (Kaggle)
        ("cuda", (7, 0), torch.float16, True),  # V100
        ("cuda", (7, 5), torch.float16, True),  # T4 (Kaggle, Colab)
        ("cuda", (8, 0), torch.bfloat16, False),  # A100
        ("cuda", (8, 9), torch.bfloat16, False),  # L4
        ("cuda", (9, 0), torch.bfloat16, False),  # H100
        ("cpu", None, torch.float32, False),
        ("mps", None, torch.float32, False),
    ],
)
def test_bf16_only_where_the_gpu_has_it_natively(
    device_type: str, capability: tuple[int, int] | None, dtype: torch.dtype, scaler: bool
) -> None:
    precision = choose_precision(device_type, capability)
    assert (precision.dtype, precision.grad_scaler) == (dtype, scaler)
    assert precision.autocast == (dtype != torch.float32)


def test_a_t4_gets_fp16_although_torch_says_it_supports_bf16(monkeypatch) -> None:
    # On a T4, torch.cuda.is_bf16_supported() is True (emulation); it must not be asked.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    t4 = device_precision("cuda:1", capability_of=lambda device: (7, 5))
    assert t4 == Precision("cuda", torch.float16, grad_scaler=True)
    assert t4.describe() == "float16 + GradScaler on cuda"
    a100 = device_precision("cuda", capability_of=lambda device: (8, 0))
    assert a100.describe() == "bfloat16 on cuda"


def test_cpu_is_asked_no_capability_and_computes_without_autocast() -> None:
    def no_cuda(device: torch.device) -> tuple[int, int]:
        raise AssertionError("a CPU has no CUDA capability")

    cpu = device_precision("cpu", capability_of=no_cuda)
    with cpu.autocast_context():
        assert not torch.is_autocast_enabled("cpu")
    bf16 = Precision("cpu", torch.bfloat16, grad_scaler=False)
    with bf16.autocast_context():
        assert torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_expandable_segments_unless_the_user_chose(monkeypatch) -> None:
    for name in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"):
        monkeypatch.delenv(name, raising=False)
    enable_expandable_segments()

    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:128")
    enable_expandable_segments()
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "max_split_size_mb:128"
