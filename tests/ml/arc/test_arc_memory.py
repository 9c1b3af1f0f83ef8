"""The memory arithmetic of ml.arc.memory against real models (meta device, tiny CPU layer)."""

from __future__ import annotations

import pytest
import torch

from ml.arc import memory
from ml.arc.memory import GIB, LLAMA_3_8B, LLAMA_32_1B, LlamaShape, Recipe

TARGETS = list(Recipe.targets)


@pytest.mark.parametrize("shape", [LLAMA_3_8B, LLAMA_32_1B], ids=["8b", "1b"])
def test_parameter_counts_match_the_real_model(shape: LlamaShape) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    config = memory.hf_config(shape)
    assert memory.shape_from_config(config) == shape
    with torch.device("meta"):  # the real shape, no weights allocated, nothing downloaded
        model = LlamaForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == memory.total_params(shape)
    linear = sum(
        module.weight.numel()
        for name, module in model.model.layers.named_modules()
        if isinstance(module, torch.nn.Linear)
    )
    assert linear == memory.linear_params(shape)
    lora = LoraConfig(r=128, lora_alpha=16, target_modules=TARGETS, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora, low_cpu_mem_usage=True)
    adapter = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    assert adapter == memory.lora_params(shape, 128, TARGETS)


def test_llama_3_8b_numbers_in_the_doc() -> None:
    assert memory.total_params(LLAMA_3_8B) == 8_030_261_248
    assert memory.lora_params(LLAMA_3_8B, 128, TARGETS) == 281_018_368
    # NF4 with double quantisation: 0.5 byte + an 8-bit absmax per 64 + fp32 per 256 blocks.
    assert memory.nf4_bytes(6400) == pytest.approx(3200 + 100 + 400 / 256)
    budget = memory.training_budget(LLAMA_3_8B, Recipe())
    assert budget["AdamW moments (2 x fp32)"] == 2 * budget["LoRA weights (fp32)"]
    assert budget["embeddings + output head"] / GIB == pytest.approx(1.957, abs=1e-3)
    fp32 = memory.training_budget(LLAMA_3_8B, Recipe(embeddings_fp32=True))
    assert fp32["embeddings + output head"] == 2 * budget["embeddings + output head"]


def test_checkpointing_and_chunking_shrink_the_training_budget() -> None:
    full = memory.training_budget(LLAMA_3_8B, Recipe(gradient_checkpointing=False))
    checkpointed = memory.training_budget(LLAMA_3_8B, Recipe())
    assert checkpointed["activations"] < 0.2 * full["activations"]
    unchunked = memory.training_budget(LLAMA_3_8B, Recipe(ce_chunk=None))
    assert unchunked["logits + loss"] == 8 * checkpointed["logits + loss"]  # 8192 / 1024
    short = memory.training_budget(LLAMA_3_8B, Recipe(seq_len=512, ce_chunk=4096))
    assert short["logits + loss"] == 512 * LLAMA_3_8B.vocab * 10


def test_unknown_lora_target_is_named() -> None:
    with pytest.raises(ValueError, match="not Llama projections: qkv"):
        memory.lora_params(LLAMA_3_8B, 8, ["q_proj", "qkv"])


def _saved_bytes(layer: torch.nn.Module, rotary: torch.nn.Module, tokens: int) -> int:
    """Bytes of the distinct non-parameter tensors autograd saves in one layer's forward."""
    params = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    hidden = torch.randn(1, tokens, LAYER_SHAPE.hidden, dtype=torch.bfloat16, requires_grad=True)
    positions = torch.arange(tokens)[None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = rotary(hidden, positions)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            layer(hidden, position_embeddings=embeddings, position_ids=positions)
    return sum(saved.values())


LAYER_SHAPE = LlamaShape(256, 1, 768, 64, 4, 2, tied_embeddings=False)


def test_activation_bytes_per_token_match_autograd() -> None:
    """The per-token activation formula against what autograd really keeps (CPU, bf16)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    config = memory.hf_config(LAYER_SHAPE, attn_implementation="sdpa")
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, task_type="CAUSAL_LM")
    inner = get_peft_model(model, lora).base_model.model.model
    # The difference of two lengths cancels the per-layer constants (LoRA weight casts).
    short, long = (_saved_bytes(inner.layers[0], inner.rotary_emb, n) for n in (64, 160))
    measured = (long - short) / (160 - 64)
    predicted = memory.saved_bytes_per_token(LAYER_SHAPE, 8, TARGETS)
    assert predicted == pytest.approx(measured, rel=0.03)


def test_markdown_table_and_cli(capsys: pytest.CaptureFixture[str]) -> None:
    memory.main(["--seq-len", "2048"])
    out = capsys.readouterr().out
    assert "| LoRA weights (fp32) | 1.05 | 1.05 |" in out
    assert "| AdamW moments (2 x fp32) | 2.09 | - |" in out
    assert "On a 15 GiB T4: training fits" in out


def test_loss_chunk_matches_the_trainer() -> None:
    from ml.arc.ttt import LOSS_CHUNK_TOKENS

    assert Recipe().ce_chunk == LOSS_CHUNK_TOKENS
