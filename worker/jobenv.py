"""What a job's environment may hold: an allowlist, kept here and nowhere else.

A job is someone's code. It gets
  1. the job contract's variables (worker/context.py: BATON_EXPERIMENT_ID, BATON_CONFIG, ...),
  2. the secrets its experiment names (from the grant; only ever its owner's),
  3. its `config.env` (the `command` kind),
  4. from the agent's environment, only the platform's ordinary variables below,
and the job environment's `PATH`/`VIRTUAL_ENV` (worker/environment.py). Never the agent's
credentials (BATON_WORKER_TOKEN, BATON_ENROLL_CODE), the control plane's (BATON_SECRET_KEY,
DATABASE_URL, REDIS_URL, SMTP or Kaggle keys), cloud credentials (AWS_*,
GOOGLE_APPLICATION_CREDENTIALS) or API keys (WANDB_API_KEY, HF_TOKEN) that it did not name
as secrets.
"""

from __future__ import annotations

import ctypes
import re
import sys
from collections.abc import Mapping
from pathlib import Path

PR_SET_DUMPABLE = 4  # <linux/prctl.h>

# Exactly these names pass. PYTHONPATH passes: hosted notebooks put their own libraries on it
# (Colab: /env/python) and it holds no credential.
PLATFORM_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "SHELL",
        "TERM",
        "PYTHONPATH",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "LD_LIBRARY_PATH",
        "HF_HOME",
        "HF_HUB_CACHE",
        "HF_DATASETS_CACHE",
        "TORCH_HOME",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "CONDA_DEFAULT_ENV",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
    }
)
# Names starting with these pass, unless they look like a credential (CREDENTIAL below):
# locale, GPU runtime, desktop dirs, and the hosted platforms' own variables (the agent's
# platform detection reads the same ones; KAGGLE_KERNEL_RUN_TYPE, COLAB_GPU, ...).
PLATFORM_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "NCCL_", "XDG_", "KAGGLE_", "COLAB_", "PAPERSPACE_")
# KAGGLE_KEY, a *_TOKEN, *_SECRET, *_PASSWORD or *_CREDENTIALS: never from the agent's
# environment, whatever the prefix. A job that needs one names it as a secret.
CREDENTIAL = re.compile(r"(^|_)(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)(_|$)")


def platform_variable(name: str) -> bool:
    """Whether the agent's variable ``name`` may reach a job."""
    if name in PLATFORM_NAMES:
        return True
    return name.startswith(PLATFORM_PREFIXES) and not CREDENTIAL.search(name)


def platform_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of the agent's environment a job inherits."""
    return {name: value for name, value in environ.items() if platform_variable(name)}


def model_cache_env(cache_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """``HF_HOME`` for a job: the platform's own if the agent has one, else ``cache_dir``, a
    folder of the agent's that outlives each job, so the jobs of one session download a
    model once. Jobs on one worker share it, as they share its environments and bundles."""
    if environ.get("HF_HOME"):
        return {}  # inherited through PLATFORM_NAMES
    return {"HF_HOME": str(cache_dir)}


def hide_agent_from_jobs() -> bool:
    """Make the agent's memory and /proc/<pid>/environ unreadable to its jobs (Linux).

    Jobs run as the agent's OS user, so without this a job could read the agent's original
    environment (its worker token, or a notebook's keys) from /proc. A non-dumpable process
    can be neither read there nor ptraced by another process of the same user; its children
    are dumpable again after their exec. Returns whether it took effect. The command line
    stays world-readable: give the token in BATON_WORKER_TOKEN, not --token.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False
