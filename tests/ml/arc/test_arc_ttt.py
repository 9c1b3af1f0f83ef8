from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from arc_fixtures import TINY_SYSTEM_PROMPT, tiny_tasks

from ml.arc.configs import EarlyStopping, LoraSettings, ModelSettings, PromptSettings, TrainSettings
from ml.arc.formatting import PromptBuilder
from ml.arc.modeling import (
    GPURequiredError,
    attach_lora,
    check_quantization,
    detach_lora,
    load_model,
    prepare_base,
    set_checkpointing,
)
from ml.arc.ttt import (
    IGNORE_INDEX,
    AdapterTrainer,
    PlateauStopper,
    chunked_lm_loss,
    shortest_half,
    training_set,
)
from ml.common.precision import Precision

LORA = LoraSettings(rank=4, alpha=8)
SETTINGS = TrainSettings(
    epochs=2,
    max_examples=8,
    batch_size=2,
    learning_rate=1e-2,
    transforms=["rot90", "transpose"],
    early_stopping=EarlyStopping(enabled=False),
)


@pytest.fixture(scope="module")
def base(tiny_model_dir: Path):
    model, tokenizer = load_model(ModelSettings(name_or_path=str(tiny_model_dir)), "cpu")
    return model, PromptBuilder(PromptSettings(system_prompt=TINY_SYSTEM_PROMPT), tokenizer)


def adapter(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def make_trainer(
    model, builder, settings: TrainSettings = SETTINGS, seed: int = 5, max_steps: int | None = None
):
    examples = training_set(tiny_tasks()[0], settings, builder, seed=seed, max_seq_len=1024)
    return AdapterTrainer(
        model,
        examples,
        settings,
        seed=seed,
        device="cpu",
        pad_id=builder.tokenizer.pad_token_id,
        max_steps=max_steps,
    )


def test_base_model_is_frozen_with_gradient_checkpointing(base) -> None:
    model, _ = base
    assert model.is_activation_checkpointing
    assert not any(p.requires_grad for p in model.parameters())
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # CPU computes in fp32


def test_adapters_are_seeded_and_detach_cleanly(base) -> None:
    model, _ = base
    first = attach_lora(model, LORA, seed=11)
    trainable = {n for n, p in first.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    init = adapter(first)
    model = detach_lora(first)
    assert not any("lora_" in n for n, _ in model.named_parameters())
    second = attach_lora(model, LORA, seed=11)
    try:
        assert all(torch.equal(init[n], p) for n, p in adapter(second).items())
    finally:
        detach_lora(second)


def test_training_lowers_the_loss(base) -> None:
    model, builder = base
    peft_model = attach_lora(model, LORA, seed=3)
    try:
        trainer = make_trainer(
            peft_model, builder, SETTINGS.model_copy(update={"epochs": 4, "learning_rate": 5e-2})
        )
        outcome = trainer.run()
    finally:
        detach_lora(peft_model)
    assert outcome.steps == outcome.total_steps == 16 and not outcome.interrupted
    # A random tiny model's frozen embeddings bound how far a rank-4 adapter can go.
    assert sum(outcome.losses[-4:]) / 4 < sum(outcome.losses[:4]) / 4 - 0.1


def test_a_restarted_task_trains_exactly_as_before(base) -> None:
    """Resume restarts an interrupted task (no mid-task state is kept): same seed, same run."""
    model, builder = base
    straight = attach_lora(model, LORA, seed=9)
    try:
        expected = make_trainer(straight, builder).run()
        expected_adapter = adapter(straight)
    finally:
        detach_lora(straight)

    first = attach_lora(model, LORA, seed=9)
    try:
        trainer = make_trainer(first, builder)
        stopped = trainer.run(should_stop=lambda: trainer.step == 3)
        assert stopped.interrupted and stopped.steps == 3
    finally:
        detach_lora(first)

    restarted = attach_lora(model, LORA, seed=9)
    try:
        outcome = make_trainer(restarted, builder).run()
        assert outcome.losses == expected.losses
        assert all(torch.equal(expected_adapter[n], p) for n, p in adapter(restarted).items())
    finally:
        detach_lora(restarted)


def test_chunked_loss_equals_the_full_logits_loss(base) -> None:
    """The chunked head + cross-entropy gives the model's own loss and the same gradients."""
    model, builder = base
    peft_model = attach_lora(model, LORA, seed=2)
    try:
        trainer = make_trainer(peft_model, builder)
        batch = trainer._collate(trainer.batch_indices(0))
        scored = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        reference = peft_model(**batch).loss
        reference_grads = torch.autograd.grad(reference, list(adapter_params(peft_model)))
        chunked = chunked_lm_loss(peft_model, batch, chunk_tokens=7) / scored
        grads = torch.autograd.grad(chunked, list(adapter_params(peft_model)))
    finally:
        detach_lora(peft_model)
    assert scored > 7  # several chunks really ran
    assert torch.allclose(chunked, reference, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, reference_grads, strict=True))


def adapter_params(model):
    return (p for n, p in model.named_parameters() if "lora_" in n)


def test_time_limit_ends_training_with_the_adapter_kept(base) -> None:
    model, builder = base
    peft_model = attach_lora(model, LORA, seed=1)
    try:
        trainer = make_trainer(peft_model, builder)
        outcome = trainer.run(out_of_time=lambda: trainer.step >= 3)
        capped = make_trainer(peft_model, builder, max_steps=2).run()
    finally:
        detach_lora(peft_model)
    assert outcome.out_of_time and not outcome.interrupted and outcome.steps == 3
    assert capped.total_steps == capped.steps == 2 < trainer.total_steps


def test_shortest_half_keeps_fewer_shorter_examples_in_order(base) -> None:
    _, builder = base
    examples = training_set(tiny_tasks()[2], SETTINGS, builder, seed=1, max_seq_len=1024)
    half = shortest_half(examples)
    assert len(half) == max(1, len(examples) // 2)
    assert max(len(e.input_ids) for e in half) <= min(
        len(e.input_ids) for e in examples if e not in half
    )
    assert half == [e for e in examples if e in half]  # the original order


def test_early_stopping_on_a_loss_plateau(base) -> None:
    model, builder = base
    flat = SETTINGS.model_copy(
        update={
            "learning_rate": 1e-12,
            "epochs": 6,
            "early_stopping": EarlyStopping(window_steps=2, patience=2, min_delta=0.01),
        }
    )
    peft_model = attach_lora(model, LORA, seed=1)
    try:
        outcome = make_trainer(peft_model, builder, flat).run()
    finally:
        detach_lora(peft_model)
    assert outcome.stopped_early and outcome.steps == 6 < outcome.total_steps


def test_plateau_stopper_keeps_going_while_the_loss_falls() -> None:
    stopper = PlateauStopper(EarlyStopping(window_steps=2, patience=1, min_delta=0.01))
    assert not any(stopper.update(loss) for loss in [8, 8, 4, 4, 2, 2, 1, 1])
    assert [stopper.update(loss) for loss in [1, 1]] == [False, True]


def test_four_bit_without_a_gpu_fails_with_a_clear_message() -> None:
    with pytest.raises(GPURequiredError, match=r"needs a CUDA GPU.*load_in_4bit=false"):
        check_quantization(ModelSettings(load_in_4bit=True), "cpu")
    check_quantization(ModelSettings(load_in_4bit=False), "cpu")


def test_fp16_with_a_grad_scaler_trains_the_fp32_adapter(base) -> None:
    """The T4 path (fp16 autocast + GradScaler), run on the CPU's autocast."""
    model, builder = base
    t4_like = Precision("cpu", torch.float16, grad_scaler=True)
    peft_model = attach_lora(model, LORA, seed=4)
    try:
        before = adapter(peft_model)
        examples = training_set(tiny_tasks()[0], SETTINGS, builder, seed=5, max_seq_len=1024)
        trainer = AdapterTrainer(
            peft_model,
            examples,
            SETTINGS,
            seed=5,
            device="cpu",
            pad_id=builder.tokenizer.pad_token_id,
            precision=t4_like,
        )
        assert trainer.scaler.is_enabled()
        outcome = trainer.run()
        after = adapter(peft_model)
    finally:
        detach_lora(peft_model)
    assert outcome.steps == outcome.total_steps and all(map(math.isfinite, outcome.losses))
    assert {p.dtype for p in after.values()} == {torch.float32}  # master weights stay fp32
    assert any(not torch.equal(before[n], p) for n, p in after.items())


def test_preparing_a_16_bit_base_keeps_its_embeddings_and_head_16_bit() -> None:
    """What a 4-bit load leaves outside the 4-bit layers (embeddings, head, norms) is not
    upcast to fp32, as peft's prepare_model_for_kbit_training would (~3.9 GiB on 8B)."""
    from arc_fixtures import tiny_llama

    model = tiny_llama(vocab_size=64).to(torch.float16)
    prepared = prepare_base(model, ModelSettings(load_in_4bit=True))
    assert {p.dtype for p in prepared.parameters()} == {torch.float16}
    assert prepared.get_input_embeddings().weight.dtype == torch.float16
    assert prepared.get_output_embeddings().weight.dtype == torch.float16
    assert not any(p.requires_grad for p in prepared.parameters())
    assert prepared.is_activation_checkpointing


class _OldNamesModel:
    """A model as transformers 5.17 (the GPU image) has it: only gradient_checkpointing_*."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, object]]] = []

    def gradient_checkpointing_enable(self, **kwargs: object) -> None:
        self.calls.append(("enable", kwargs))

    def gradient_checkpointing_disable(self) -> None:
        self.calls.append(("disable", {}))


def test_checkpointing_uses_the_old_names_where_transformers_has_only_those() -> None:
    model = _OldNamesModel()
    set_checkpointing(model, enabled=True)
    set_checkpointing(model, enabled=False)
    assert model.calls == [
        ("enable", {"gradient_checkpointing_kwargs": {"use_reentrant": False}}),
        ("disable", {}),
    ]


def test_checkpointing_switches_off_and_on_on_a_real_model(base) -> None:
    model, _ = base
    set_checkpointing(model, enabled=False)
    assert not model.is_activation_checkpointing
    set_checkpointing(model, enabled=True)
    assert model.is_activation_checkpointing
