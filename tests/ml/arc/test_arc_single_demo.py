"""A task with a single demonstration: no TTT before; with MARC's demo-free episodes, an
adapter trained on augmented copies of that one demonstration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from arc_fixtures import tiny_job_config, tiny_tasks

from ml.arc.configs import TTTJobConfig
from ml.arc.data import ArcTask
from ml.arc.formatting import PromptBuilder
from ml.arc.modeling import load_model
from ml.arc.solve import TaskHooks, solve_task


@pytest.mark.parametrize(("demo_free", "trained"), [(True, True), (False, False)])
def test_a_single_demonstration_task_gets_augmented_ttt(
    tiny_model_dir: Path, tmp_path: Path, demo_free: bool, trained: bool
) -> None:
    config = TTTJobConfig.model_validate(
        tiny_job_config(
            tmp_path,
            tiny_model_dir,
            tmp_path,
            train={"demo_free_episodes": demo_free, "max_examples": 4, "epochs": 1},
            inference={"transforms": ["identity"], "permutations": 1, "max_new_tokens": 8},
        )
    )
    model, tokenizer = load_model(config.model, "cpu")
    builder = PromptBuilder(config.prompt, tokenizer)
    mirror = tiny_tasks()[0]
    single = ArcTask("one", mirror.train[:1], mirror.test_inputs, mirror.test_outputs)
    adapters: list[Any] = []
    outcome = solve_task(
        model, builder, single, config, device="cpu", hooks=TaskHooks(keep_adapter=adapters.append)
    )
    assert outcome.guesses is not None
    assert (outcome.stats["examples"] == 4, outcome.stats["steps"] == 2) == (trained, trained)
    assert bool(adapters) == trained
    assert not any("lora_" in name for name, _ in model.named_parameters()), "adapter removed"
