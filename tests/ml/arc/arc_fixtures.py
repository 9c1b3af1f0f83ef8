"""Tiny ARC tasks and a tiny character-level Llama for fast CPU tests."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import numpy as np

from ml.arc.data import ArcTask, Example

TINY_SYSTEM_PROMPT = "Solve:\n"


def _grid(rows: list[list[int]]) -> np.ndarray:
    return np.array(rows, dtype=np.uint8)


def tiny_tasks() -> list[ArcTask]:
    """Three small tasks (mirror, recolour, tile); the recolour one has two test inputs."""
    mirror = [[[1, 0], [2, 3]], [[0, 4], [5, 0]], [[6, 7], [0, 8]], [[9, 1], [1, 0]]]
    recolour = [
        [[1, 0], [0, 1]],
        [[1, 1], [0, 2]],
        [[3, 1], [1, 0]],
        [[1, 2], [2, 1]],
        [[0, 1], [1, 1]],
    ]
    tile = [[[1, 2]], [[3, 0]], [[4, 5]], [[0, 6]]]

    def swap(grid: np.ndarray) -> np.ndarray:
        out = grid.copy()
        out[grid == 1] = 4
        return out

    def task(task_id: str, grids: list[Any], fn: Any, n_test: int) -> ArcTask:
        pairs = [Example(_grid(g), fn(_grid(g))) for g in grids]
        train, test = pairs[:-n_test], pairs[-n_test:]
        return ArcTask(
            task_id,
            tuple(train),
            tuple(p.input for p in test),
            tuple(p.output for p in test),
        )

    return [
        task("a-mirror", mirror, np.fliplr, 1),
        task("b-recolour", recolour, swap, 2),
        task("c-tile", tile, lambda g: np.tile(g, (1, 2)), 1),
    ]


def task_json(task: ArcTask, *, with_outputs: bool = True) -> dict[str, Any]:
    tests = [{"input": grid.tolist()} for grid in task.test_inputs]
    if with_outputs and task.test_outputs is not None:
        for entry, grid in zip(tests, task.test_outputs, strict=True):
            entry["output"] = grid.tolist()
    return {
        "train": [{"input": ex.input.tolist(), "output": ex.output.tolist()} for ex in task.train],
        "test": tests,
    }


def write_task_folder(folder: Path, tasks: list[ArcTask]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        (folder / f"{task.task_id}.json").write_text(json.dumps(task_json(task)))
    return folder


def char_tokenizer() -> Any:
    """A fast tokenizer with one token per printable character (offsets work as usual)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for char in string.printable:
        vocab.setdefault(char, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def tiny_llama(vocab_size: int, *, seed: int = 0) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config)


def build_tiny_model(directory: Path) -> Path:
    """Save a randomly initialised tiny Llama and the character tokenizer to ``directory``."""
    tokenizer = char_tokenizer()
    tiny_llama(len(tokenizer)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tiny_job_config(tasks_dir: Path, model_dir: Path, cache_dir: Path, **overrides: Any) -> dict:
    """An ``ml.arc.ttt`` config that runs the tiny tasks in seconds on a CPU."""
    config: dict[str, Any] = {
        "data": {"kind": "folder", "path": str(tasks_dir), "cache_dir": str(cache_dir)},
        "model": {"name_or_path": str(model_dir), "device": "cpu", "max_seq_len": 1024},
        "lora": {"rank": 4, "alpha": 8},
        "train": {
            "epochs": 2,
            "max_examples": 8,
            "batch_size": 2,
            "learning_rate": 1e-3,
            "transforms": ["rot90", "flip_lr", "transpose"],
            "early_stopping": {"enabled": False},
        },
        "inference": {
            "transforms": ["identity", "rot90", "transpose"],
            "permutations": 2,
            "batch_size": 6,
            "max_new_tokens": 48,
        },
        "prompt": {"system_prompt": TINY_SYSTEM_PROMPT},
        "seed": 7,
        "tensorboard": False,
    }
    for section, values in overrides.items():
        if isinstance(values, dict):
            config[section] = {**config.get(section, {}), **values}
        else:
            config[section] = values
    return config
