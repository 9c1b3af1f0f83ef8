from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from ml.arc.configs import (
    CONFIG_MODELS,
    EVAL_KIND,
    TTT_KIND,
    DataSource,
    EvalJobConfig,
    TrainSettings,
    TTTJobConfig,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_configs_module_imports_no_ml_libraries() -> None:
    code = (
        "import sys, ml.arc.configs\n"
        "heavy = {'torch', 'numpy', 'transformers', 'peft'} & set(sys.modules)\n"
        "print(sorted(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert out.stdout.strip() == "[]"


def test_defaults_follow_the_recipe() -> None:
    config = TTTJobConfig()
    assert config.lora.alpha == 16 and config.lora.rank == 128
    assert config.lora.target_modules == ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]
    assert (config.train.epochs, config.train.learning_rate) == (2, 1e-4)
    assert config.train.max_examples == 250
    assert config.train.loss_on == "all_outputs"
    assert config.prompt.grid_format == "python_list" and config.prompt.io_separator == " -> "
    assert len(config.inference.transforms) == 8


@pytest.mark.parametrize(
    ("model", "raw", "message"),
    [
        (DataSource, {"kind": "folder"}, "data.path is required"),
        (DataSource, {"kind": "kaggle"}, "data.challenges is required"),
        (TrainSettings, {"batch_size": 3, "micro_batch_size": 2}, "multiple"),
        (TTTJobConfig, {"lora": {"rank": 0}}, "greater than or equal to 1"),
        (TTTJobConfig, {"trian": {}}, "Extra inputs are not permitted"),
        (EvalJobConfig, {}, "predictions"),
        # A hub download is pinned to a commit, not to a branch that can move.
        (TTTJobConfig, {"model": {"revision": "main"}}, "should match pattern"),
    ],
)
def test_invalid_configs_are_rejected_with_the_reason(model, raw, message) -> None:
    with pytest.raises(ValidationError, match=message):
        model.model_validate(raw)


def test_kind_registry() -> None:
    assert {TTT_KIND: TTTJobConfig, EVAL_KIND: EvalJobConfig} == CONFIG_MODELS


@pytest.mark.parametrize(
    "path", sorted((REPO_ROOT / "configs" / "arc").glob("*.json")), ids=lambda p: p.name
)
def test_shipped_example_configs_validate(path: Path) -> None:
    kind = TTT_KIND if path.name.startswith("ttt-") else EVAL_KIND
    CONFIG_MODELS[kind].model_validate(json.loads(path.read_text()))
