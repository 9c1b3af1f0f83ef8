"""Which floating-point format to compute in, decided once per device for ml.arc and ml.video.

bf16 only where the GPU does it natively (compute capability >= 8.0: A100, L4, H100...).
``torch.cuda.is_bf16_supported()`` is deliberately not asked: it answers True on a T4 (7.5)
and a P100 (6.0), the GPUs Kaggle and Colab lend, where bf16 is emulated and slow. Those get
fp16 instead, whose narrow range needs a GradScaler so small gradients do not flush to zero.
CPUs and MPS compute in fp32: it is exact, and tiny test models gain nothing from 16 bits.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

NATIVE_BF16_CAPABILITY = (8, 0)
ALLOC_CONF_VARS = ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")


@dataclass(frozen=True)
class Precision:
    device_type: str
    dtype: torch.dtype
    """Dtype of the 16-bit weights and of autocast; fp32 means no autocast."""
    grad_scaler: bool
    """True for fp16: scale the loss so gradients stay representable."""

    @property
    def autocast(self) -> bool:
        return self.dtype != torch.float32

    def autocast_context(self) -> AbstractContextManager[Any]:
        if not self.autocast:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def describe(self) -> str:
        name = str(self.dtype).removeprefix("torch.")
        return f"{name}{' + GradScaler' if self.grad_scaler else ''} on {self.device_type}"


def choose_precision(device_type: str, capability: tuple[int, int] | None) -> Precision:
    """The precision for ``device_type`` ("cuda", "mps", "cpu"); ``capability`` is CUDA's."""
    if device_type != "cuda":
        return Precision(device_type, torch.float32, grad_scaler=False)
    if capability is not None and capability >= NATIVE_BF16_CAPABILITY:
        return Precision("cuda", torch.bfloat16, grad_scaler=False)
    return Precision("cuda", torch.float16, grad_scaler=True)


def device_precision(
    device: str | torch.device,
    capability_of: Callable[[torch.device], tuple[int, int]] = torch.cuda.get_device_capability,
) -> Precision:
    """:func:`choose_precision` for a concrete device, asking CUDA for its capability."""
    target = torch.device(device)
    capability = capability_of(target) if target.type == "cuda" else None
    return choose_precision(target.type, capability)


def enable_expandable_segments() -> None:
    """Let the CUDA allocator grow segments instead of fragmenting between tasks of varying
    length. It reads the setting when CUDA first allocates, so call this before that; a value
    the user set is kept."""
    if not any(os.environ.get(name) for name in ALLOC_CONF_VARS):
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"


def release_cached_memory() -> None:
    """Hand freed blocks back between tasks, so the next task's peak starts from a clean slate."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
