"""The workloads as Baton experiment kinds, registered through the ``baton.kinds`` entry point.

The control plane loads this to validate configs, so it imports only the torch-free config
modules. Workers that cannot import ``ml`` install the ``baton_ml`` wheel the control plane
serves.
"""

from __future__ import annotations

from typing import Any

from ml.arc import configs as arc_configs
from ml.video import configs as video_configs

WHEEL = "baton_ml"
# The job modules (they import torch; their config modules do not).
ENTRYPOINTS = {
    "ml.arc.ttt": "ml.arc.ttt_job",
    "ml.arc.eval": "ml.arc.eval_job",
    "ml.video.dataset": "ml.video.dataset_job",
    "ml.video.train": "ml.video.train_job",
    "ml.video.compare": "ml.video.compare_job",
    "ml.video.describe": "ml.video.describe_job",
}
_CONFIGS = {**arc_configs.CONFIG_MODELS, **video_configs.CONFIG_MODELS}

KINDS: list[dict[str, Any]] = [
    {"name": name, "config": _CONFIGS[name], "entrypoint": module, "wheel": WHEEL}
    for name, module in ENTRYPOINTS.items()
]
