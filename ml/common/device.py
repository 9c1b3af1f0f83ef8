"""Device choice: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

from typing import Literal

DevicePreference = Literal["auto", "cuda", "mps", "cpu"]


class DeviceUnavailableError(RuntimeError):
    """A specific device was requested but this machine does not have it."""


def available_devices() -> list[str]:
    """Devices torch can use here, best first; just ``["cpu"]`` when torch is absent."""
    try:
        import torch
    except ImportError:
        return ["cpu"]
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def choose_device(preference: DevicePreference = "auto") -> str:
    """The device to run on: the best available for "auto", else exactly the one asked for."""
    found = available_devices()
    if preference == "auto":
        return found[0]
    if preference not in found:
        raise DeviceUnavailableError(
            f"device {preference!r} was requested but this machine only has {found}"
        )
    return preference
