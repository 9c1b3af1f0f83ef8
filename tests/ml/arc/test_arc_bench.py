"""The bench scripts' logic, on CPU with tiny models (the 4-bit GPU path needs CUDA)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
import torch
from arc_fixtures import char_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[3]


def load_bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    # Registered first: dataclasses resolve a module's string annotations through sys.modules.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_load_bench_measures_cold_then_cached(tmp_path: Path) -> None:
    bench = load_bench("arc_load")
    cold = bench.measure(str(tmp_path))
    cached = bench.measure(str(tmp_path))
    assert cold["tasks"] == cached["tasks"] == 1000
    assert cached["grids"] == cold["grids"] > 2000
    assert 0 < cached["seconds"] < cold["seconds"] and cold["peak_mb"] > 0


def test_gpu_check_dry_run_end_to_end(tmp_path: Path) -> None:
    """bench/gpu_check.sh --dry-run: every stage on the CPU, a tiny Llama, results written."""
    carry, out = tmp_path / "carry", tmp_path / "out"
    char_tokenizer().save_pretrained(carry / "tokenizer")
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "bench" / "gpu_check.sh"), "--dry-run", "--carry", str(carry)],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,  # under pytest-timeout's 300 s
    )
    assert done.returncode == 0, done.stdout[-3000:]
    results = json.loads((out / "gpu_check.json").read_text())
    assert results["dry_run"] and results["device"] == "cpu"
    assert any("4-bit" in item for item in results["skipped"])
    assert any("allocator cap" in item for item in results["skipped"])
    assert not any("out of time" in item for item in results["skipped"])
    assert results["errors"] == [] and results["findings"] == []

    strata = results["strata"]
    sizes = [strata[name]["prompt_tokens"] for name in ("short", "median", "long")]
    assert sizes == sorted(sizes) and sizes[-1] < 2048 - 8  # max_seq_len - token budget

    runs = results["arc"]["8b"]["runs"]
    assert {(r["stratum"], r["gradient_checkpointing"]) for r in runs} == {
        (s, gc) for s in ("short", "median", "long") for gc in (True, False)
    }
    for run in runs:
        assert run["task"] == strata[run["stratum"]]["task"]
        train, infer = run["train"], run["inference"]
        assert train["oom"] is None and infer["oom"] is None
        assert train["steps"] == len(train["step_seconds"]) == 2
        # The measured steps train on the task's longest TTT examples.
        assert max(train["step_tokens"]) <= 2 * run["max_example_tokens"]
        assert run["recipe_steps"] == 2 * -(-run["examples"] // 2)  # epochs x batches
        assert 1 <= infer["generated_tokens"] <= 4 and infer["batch"] == 2
        total = run["recipe_seconds"]
        assert total["total"] == pytest.approx(total["ttt"] + total["inference"])
        assert total["ttt"] > 0 and total["inference"] > 0
        assert run["predicted_gib"]["train"] > 0
    (one_b,) = results["arc"]["1b"]["runs"]
    assert one_b["stratum"] == "median" and results["arc"]["1b"]["shape"]["tied_embeddings"]
    (video,) = results["video"]
    assert video["amp"] is None and video["steps"] == 6 and video["finite"]

    table = (out / "gpu_check.md").read_text()
    assert "# GPU check (CPU dry run)" in table and "| long |" in table
    assert "# GPU check (CPU dry run)" in (out / "gpu_check.log").read_text()


def test_an_oom_is_recorded_not_raised() -> None:
    bench = load_bench("arc_gpu_memory")
    record: dict = {}
    with bench.phase(record, "cpu"):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore")
    assert record["oom"] == "CUDA out of memory. Tried to allocate 2.00 GiB"
    run = {"train": record, "inference": {"oom": None}, "recipe_train_tokens": 10}
    assert bench.extrapolate(run) is None


def test_extrapolation_from_measured_rates() -> None:
    bench = load_bench("arc_gpu_memory")
    run = {
        "train": {"oom": None, "seconds_per_token": 0.001},
        "recipe_train_tokens": 200_000,
        "ttt_set_seconds": 4.0,
        "inference": {
            "oom": None,
            "prefill_seconds": 2.0,
            "prompt_tokens": 1000,
            "seconds_per_token": 0.05,
            "recipe_batches": [[1000, 100], [500, 40]],
        },
    }
    # TTT: 4 s to build the set + 200 s of steps; inference (2 + 5) + (1 + 2) s.
    assert bench.extrapolate(run) == pytest.approx({"ttt": 204, "inference": 10, "total": 214})


def test_carry_keeps_only_cuda13_and_cpu_libraries(tmp_path: Path) -> None:
    carry = load_bench("gpu_carry")
    wheel = tmp_path / "bnb.whl"
    names = [
        "bitsandbytes/__init__.py",
        "bitsandbytes/libbitsandbytes_cuda128.so",
        "bitsandbytes/libbitsandbytes_cuda130.so",
        "bitsandbytes/libbitsandbytes_cuda132.so",
        "bitsandbytes/libbitsandbytes_rocm72.so",
        "bitsandbytes/libbitsandbytes_cpu.so",
        "bitsandbytes-0.50.2.dist-info/METADATA",
    ]
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in names:
            archive.writestr(name, name)
    dropped = carry.unpack_slim(wheel, tmp_path / "site")
    assert sorted(dropped) == [names[1], names[4]]
    site = tmp_path / "site"
    kept = sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file())
    assert kept == sorted(set(names) - set(dropped))


def test_carry_tokenizer_is_llama3_instruct(tmp_path: Path) -> None:
    carry = load_bench("gpu_carry")
    source = tmp_path / "source"
    char_tokenizer().save_pretrained(source)
    backend = json.loads((source / "tokenizer.json").read_text())
    backend["added_tokens"].append({**backend["added_tokens"][0], "id": 128256, "content": "i"})
    (source / "tokenizer.json").write_text(json.dumps(backend))
    carry.llama3_tokenizer(source, tmp_path / "tokenizer")
    written = json.loads((tmp_path / "tokenizer" / "tokenizer.json").read_text())
    assert max(t["id"] for t in written["added_tokens"]) < 128256
    config = json.loads((tmp_path / "tokenizer" / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|eot_id|>" and "pad_token" not in config

    tokenizer = char_tokenizer()
    tokenizer.chat_template = config["chat_template"]
    messages = [{"role": "system", "content": "sys "}, {"role": "user", "content": "q"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<s><|start_header_id|>system<|end_header_id|>\n\nsys<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nq<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without")
def test_gpu_check_without_cuda_or_carry_says_what_is_missing(tmp_path: Path) -> None:
    script = str(REPO_ROOT / "bench" / "gpu_check.sh")
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    missing = subprocess.run(
        ["bash", script, "--carry", str(tmp_path / "nothing")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode != 0
    assert missing.stdout.strip().endswith("tokenizer is missing; run bench/gpu_carry.py first")
    carry = tmp_path / "carry"
    char_tokenizer().save_pretrained(carry / "tokenizer")
    no_gpu = subprocess.run(
        ["bash", script, "--carry", str(carry)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert no_gpu.returncode != 0
    assert "gpu_check: no CUDA device here; use --dry-run" in no_gpu.stdout


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_four_bit_tiny_llama_on_cuda(tmp_path: Path) -> None:
    """The 4-bit build and both phases on a real GPU, with a tiny shape."""
    pytest.importorskip("bitsandbytes")
    bench, check = load_bench("arc_gpu_memory"), load_bench("gpu_check")
    from ml.arc.configs import DataSource
    from ml.arc.data import load_tasks
    from ml.arc.formatting import PromptBuilder

    tokenizer = char_tokenizer()
    profile = check.dry_run_profile(len(tokenizer))
    four_bit = {**profile.overrides, "model": {"load_in_4bit": True, "max_seq_len": 2048}}
    profile = check.Profile(**{**profile.__dict__, "device": "cuda", "overrides": four_bit})
    config = check.job_config(check.CONFIG_8B, profile, checkpointing=True)
    findings: list[str] = []
    model = bench.build_random_model(
        config, bench.llama_config(profile.shape_8b, tokenizer, 4096), "cuda", findings
    )
    builder = PromptBuilder(config.prompt, tokenizer)
    (task,) = load_tasks(DataSource(task_ids=["8b28cd80"], cache_dir=str(tmp_path)))
    run = bench.measure_task(
        model,
        builder,
        task,
        config,
        bench.ttt_set(builder, task, config),
        device="cuda",
        train_steps=2,
        new_tokens=4,
    )
    assert run["train"]["peak_allocated_gib"] > 0 and run["inference"]["peak_allocated_gib"] > 0
    assert run["recipe_seconds"]["total"] > 0
