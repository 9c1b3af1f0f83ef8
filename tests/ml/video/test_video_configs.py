from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from ml.video.configs import (
    KIND_COMPARE,
    KIND_DATASET,
    KIND_TRAIN,
    CompareConfig,
    DatasetConfig,
    TrainConfig,
    validate_config,
)

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs" / "video"


def test_configs_module_imports_without_torch_or_numpy() -> None:
    code = (
        "import sys, ml.video.configs; "
        "heavy = {'torch', 'numpy'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_training_names_a_dataset_directory_or_generates_one() -> None:
    assert TrainConfig(dataset_dir="/data/video").dataset is None
    inline = TrainConfig(dataset={"num_samples": 40})
    assert inline.inline_dataset.num_samples == 40
    # Neither: the default dataset is generated.
    assert TrainConfig().inline_dataset == DatasetConfig()
    with pytest.raises(ValidationError, match="not both"):
        TrainConfig(dataset_dir="/data/video", dataset={})


def test_forecast_horizon_must_leave_frames_to_observe() -> None:
    with pytest.raises(ValidationError, match="forecast_horizon"):
        TrainConfig(dataset={"num_frames": 4}, forecast_horizon=4)


@pytest.mark.parametrize(
    ("kind", "config", "model"),
    [
        (KIND_DATASET, {"num_samples": 8}, DatasetConfig),
        (KIND_TRAIN, {"model": {"backbone": "slowfast"}}, TrainConfig),
        (KIND_COMPARE, {"runs": ["/runs/a", {"test_accuracy": 0.9}]}, CompareConfig),
    ],
)
def test_validate_config_by_kind(kind: str, config: dict[str, object], model: type) -> None:
    assert isinstance(validate_config(kind, config), model)


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        (KIND_TRAIN, {"model": {"backbone": "resnet"}}),
        (KIND_TRAIN, {"learning_rate": 0.1}),  # unknown keys are refused, not ignored
        (KIND_DATASET, {"image_size": [4, 4]}),
        (KIND_DATASET, {"styles": ["glow"]}),
        (KIND_COMPARE, {"rank_by": 3}),
    ],
)
def test_invalid_configs_are_rejected(kind: str, config: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        validate_config(kind, config)


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown"):
        validate_config("ml.video.nope", {})


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.json")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    kind = {"dataset": KIND_DATASET, "train": KIND_TRAIN, "compare": KIND_COMPARE}
    validate_config(kind[path.name.split("_")[0]], json.loads(path.read_text()))
