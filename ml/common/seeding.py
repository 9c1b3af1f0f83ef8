"""Full seeding of every random number generator a run touches."""

from __future__ import annotations

import hashlib
import os
import random


def derive_seed(base: int, *keys: object) -> int:
    """A stable 31-bit seed for a sub-stream (e.g. one task), independent of iteration order.

    Python's ``hash`` is salted per process, so a digest is used instead: the same base and
    keys give the same seed in every process, which is what makes resumed runs reproducible.
    """
    text = "\x1f".join([str(base), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device) when they are installed."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:
        pass
    else:
        np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        # cuBLAS needs this workspace setting to run its deterministic kernels.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
