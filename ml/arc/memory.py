"""GPU memory arithmetic for LoRA/QLoRA test-time training of a Llama-shaped model.

What takes what on the GPU, from the model's shape alone, so that a config can be checked
against a card (a 15 GiB T4) before a GPU is rented, and ``bench/gpu_check.sh`` can print
the prediction beside what it measured. Pure arithmetic: no torch. The activation terms
assume autocast to a 16-bit dtype, SDPA attention (no N x N score matrix kept) and
HF's RMSNorm, which upcasts its input to fp32; see ``docs/ml-arc.md`` for the derivation.

    python -m ml.arc.memory                      # Llama-3-8B QLoRA at 8192 tokens
    python -m ml.arc.memory --model llama-3.2-1b --seq-len 4096 --no-4bit
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import Any

GIB = 2**30
NF4_BLOCK = 64
"""bitsandbytes NF4: one absmax per 64 weights."""
DOUBLE_QUANT_BLOCK = 256
"""With double quantisation the absmaxes are 8-bit, with one fp32 constant per 256 of them."""
CUDA_CONTEXT_GIB = 0.45
"""CUDA context + cuBLAS workspace outside torch's allocator (estimate; varies by driver)."""
ALLOCATOR_SLACK = 0.05
"""Fragmentation of torch's caching allocator with expandable_segments (estimate)."""
T4_GIB = 15.0
"""What a Kaggle/Colab T4 offers: 15360 MiB."""


@dataclass(frozen=True)
class LlamaShape:
    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    tied_embeddings: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def projections(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one decoder layer."""
        h, kv, i = self.hidden, self.kv_dim, self.intermediate
        return {
            "q_proj": (h, h),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (h, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }


LLAMA_3_8B = LlamaShape(4096, 32, 14336, 128256, 32, 8, tied_embeddings=False)
LLAMA_32_1B = LlamaShape(2048, 16, 8192, 128256, 32, 8, tied_embeddings=True)
SHAPES = {"llama-3-8b": LLAMA_3_8B, "llama-3.2-1b": LLAMA_32_1B}


def hf_config(shape: LlamaShape, **extra: Any) -> Any:
    """A transformers ``LlamaConfig`` of ``shape`` (``extra``: any other config field)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        tie_word_embeddings=shape.tied_embeddings,
        **extra,
    )


def shape_from_config(config: Any) -> LlamaShape:
    """The shape of a transformers ``LlamaConfig``."""
    return LlamaShape(
        hidden=config.hidden_size,
        layers=config.num_hidden_layers,
        intermediate=config.intermediate_size,
        vocab=config.vocab_size,
        heads=config.num_attention_heads,
        kv_heads=config.num_key_value_heads,
        tied_embeddings=bool(config.tie_word_embeddings),
    )


def linear_params(shape: LlamaShape) -> int:
    """Weights of every decoder linear layer (the ones QLoRA quantises; Llama has no biases)."""
    return shape.layers * sum(n_in * n_out for n_in, n_out in shape.projections().values())


def embedding_params(shape: LlamaShape) -> int:
    """Input embeddings plus the output head (one matrix when they are tied)."""
    return shape.vocab * shape.hidden * (1 if shape.tied_embeddings else 2)


def norm_params(shape: LlamaShape) -> int:
    return (2 * shape.layers + 1) * shape.hidden


def total_params(shape: LlamaShape) -> int:
    return linear_params(shape) + embedding_params(shape) + norm_params(shape)


def lora_params(shape: LlamaShape, rank: int, targets: list[str]) -> int:
    """A and B of a rank-``rank`` adapter on each targeted projection of every layer."""
    projections = shape.projections()
    unknown = sorted(set(targets) - set(projections))
    if unknown:
        raise ValueError(f"not Llama projections: {', '.join(unknown)}")
    return shape.layers * sum(rank * sum(projections[name]) for name in targets)


def nf4_bytes(params: int, *, double_quant: bool = True) -> float:
    """Bytes of ``params`` weights in NF4, quantisation constants included."""
    blocks = params / NF4_BLOCK
    constants = blocks + 4 * blocks / DOUBLE_QUANT_BLOCK if double_quant else 4 * blocks
    return params / 2 + constants


def saved_bytes_per_token(shape: LlamaShape, rank: int, targets: list[str]) -> int:
    """Bytes autograd keeps per token for one LoRA'd decoder layer (16-bit autocast).

    Frozen base linear layers keep nothing (their weight gradient is not needed). Each
    RMSNorm keeps its fp32 upcast (4h) and rsqrt (4); SDPA keeps q, k, v (GQA: k and v at
    kv width), its output and the fp32 log-sum-exp per head; RoPE keeps 16-bit cos and
    sin; the MLP keeps gate, SiLU(gate) and up (3 x 2i); each LoRA keeps a 16-bit copy of
    its input (peft casts it to the fp32 adapter dtype, autocast casts it back) and its
    rank-r middle. Checked against autograd's saved tensors in
    ``tests/ml/arc/test_arc_memory.py``.
    """
    h, i, kv = shape.hidden, shape.intermediate, shape.kv_dim
    projections = shape.projections()
    norms = 2 * (4 * h + 4)
    attention = 2 * h + 2 * kv + 2 * kv + 2 * h + 4 * shape.heads + 2 * 2 * shape.head_dim
    mlp = 3 * 2 * i
    lora = sum(2 * projections[name][0] + 2 * rank for name in targets)
    return norms + attention + mlp + lora


@dataclass(frozen=True)
class Recipe:
    """What the memory depends on besides the shape."""

    seq_len: int = 8192
    rank: int = 128
    targets: tuple[str, ...] = ("q_proj", "v_proj", "gate_proj", "up_proj", "down_proj")
    four_bit: bool = True
    gradient_checkpointing: bool = True
    ce_chunk: int | None = 1024
    """Tokens per cross-entropy chunk (``ml.arc.ttt.LOSS_CHUNK_TOKENS``); None: all at once."""
    embeddings_fp32: bool = False
    """peft's ``prepare_model_for_kbit_training`` upcasts every non-4-bit weight to fp32."""
    inference_batch: int = 8
    new_tokens: int = 3000


def training_budget(shape: LlamaShape, recipe: Recipe) -> dict[str, float]:
    """Bytes each part of one training step of a ``seq_len``-token example takes."""
    targets = list(recipe.targets)
    n = recipe.seq_len
    adapter = lora_params(shape, recipe.rank, targets)
    per_layer = saved_bytes_per_token(shape, recipe.rank, targets)
    if recipe.gradient_checkpointing:
        # Each layer keeps only its 16-bit input; backward recomputes one layer at a time.
        activations = shape.layers * 2 * shape.hidden * n + per_layer * n
    else:
        activations = shape.layers * per_layer * n
    # Logits in 16-bit, their fp32 upcast, and the fp32 log-softmax kept for backward.
    logit_tokens = min(n, recipe.ce_chunk) if recipe.ce_chunk else n
    parts = {
        "base linear weights": _base_weight_bytes(shape, recipe.four_bit),
        "embeddings + output head": embedding_params(shape) * (4 if recipe.embeddings_fp32 else 2),
        "norms": norm_params(shape) * 4.0,
        "LoRA weights (fp32)": adapter * 4.0,
        "LoRA gradients (fp32)": adapter * 4.0,
        "AdamW moments (2 x fp32)": adapter * 8.0,
        "activations": float(activations),
        "logits + loss": logit_tokens * shape.vocab * (2 + 4 + 4.0),
    }
    return _with_overheads(parts)


def inference_budget(shape: LlamaShape, recipe: Recipe) -> dict[str, float]:
    """Bytes for greedy generation of a batch after training (optimizer and grads freed)."""
    batch, prompt = recipe.inference_batch, recipe.seq_len
    tokens = batch * (prompt + recipe.new_tokens)
    h, i, kv = shape.hidden, shape.intermediate, shape.kv_dim
    parts = {
        "base linear weights": _base_weight_bytes(shape, recipe.four_bit),
        "embeddings + output head": embedding_params(shape) * 2.0,
        "norms": norm_params(shape) * 4.0,
        "LoRA weights (fp32)": lora_params(shape, recipe.rank, list(recipe.targets)) * 4.0,
        "KV cache (16-bit)": float(shape.layers * 2 * kv * 2 * tokens),
        # Prefill: one layer's transient tensors for the whole batch (q, k, v, attention
        # output, gate, up, their product), nothing kept across layers.
        "prefill working set": float(batch * prompt * 2 * (3 * h + 2 * kv + 3 * i)),
        "last-token logits (fp32)": float(batch * shape.vocab * 4),
    }
    return _with_overheads(parts)


def _base_weight_bytes(shape: LlamaShape, four_bit: bool) -> float:
    params = linear_params(shape)
    return nf4_bytes(params) if four_bit else params * 2.0


def _with_overheads(parts: dict[str, float]) -> dict[str, float]:
    allocated = sum(parts.values())
    return {
        **parts,
        "allocator slack": allocated * ALLOCATOR_SLACK,
        "CUDA context": CUDA_CONTEXT_GIB * GIB,
    }


def total_gib(budget: dict[str, float]) -> float:
    return sum(budget.values()) / GIB


def markdown(shape_name: str, recipe: Recipe) -> str:
    """Training and inference budgets side by side, in GiB, against a T4's 15 GiB."""
    shape = SHAPES[shape_name]
    train, infer = training_budget(shape, recipe), inference_budget(shape, recipe)
    rows = ["| part | training step (GiB) | inference (GiB) |", "| --- | ---: | ---: |"]
    for part in dict.fromkeys([*train, *infer]):
        rows.append(f"| {part} | {_cell(train.get(part))} | {_cell(infer.get(part))} |")
    rows.append(f"| **total** | **{total_gib(train):.2f}** | **{total_gib(infer):.2f}** |")
    fits = [
        f"{name} {'fits' if total_gib(b) <= T4_GIB else 'does NOT fit'}"
        for name, b in (("training", train), ("inference", infer))
    ]
    return "\n".join(rows) + f"\n\nOn a {T4_GIB:.0f} GiB T4: {', '.join(fits)}."


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value / GIB:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(SHAPES), default="llama-3-8b")
    parser.add_argument("--seq-len", type=int, default=Recipe.seq_len)
    parser.add_argument("--rank", type=int, default=Recipe.rank)
    parser.add_argument("--no-4bit", action="store_true", help="16-bit base weights")
    parser.add_argument("--no-checkpointing", action="store_true")
    parser.add_argument("--ce-chunk", type=int, default=Recipe.ce_chunk, help="0: unchunked")
    parser.add_argument("--fp32-embeddings", action="store_true")
    parser.add_argument("--inference-batch", type=int, default=Recipe.inference_batch)
    parser.add_argument("--new-tokens", type=int, default=Recipe.new_tokens)
    args = parser.parse_args(argv)
    recipe = replace(
        Recipe(),
        seq_len=args.seq_len,
        rank=args.rank,
        four_bit=not args.no_4bit,
        gradient_checkpointing=not args.no_checkpointing,
        ce_chunk=args.ce_chunk or None,
        embeddings_fp32=args.fp32_embeddings,
        inference_batch=args.inference_batch,
        new_tokens=args.new_tokens,
    )
    print(markdown(args.model, recipe))


if __name__ == "__main__":
    main()
