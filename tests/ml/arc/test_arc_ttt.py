from __future__ import annotations

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
    compute_dtype,
    detach_lora,
    load_model,
)
from ml.arc.ttt import AdapterTrainer, PlateauStopper, training_set
from ml.common.checkpoints import torch_load, torch_save_atomic

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


def make_trainer(model, builder, settings: TrainSettings = SETTINGS, seed: int = 5):
    examples = training_set(tiny_tasks()[0], settings, builder, seed=seed, max_seq_len=1024)
    return AdapterTrainer(
        model, examples, settings, seed=seed, device="cpu", pad_id=builder.tokenizer.pad_token_id
    )


def test_base_model_is_frozen_with_gradient_checkpointing(base) -> None:
    model, _ = base
    assert model.is_activation_checkpointing
    assert not any(p.requires_grad for p in model.parameters())
    assert compute_dtype("cpu") == torch.float32


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


def test_resuming_mid_task_continues_exactly(base, tmp_path: Path) -> None:
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
        torch_save_atomic(trainer.state_dict(), tmp_path / "train.pt")
    finally:
        detach_lora(first)

    resumed = attach_lora(model, LORA, seed=9)
    try:
        trainer = make_trainer(resumed, builder)
        trainer.load_state_dict(torch_load(tmp_path / "train.pt", map_location="cpu"))
        outcome = trainer.run()
        assert outcome.losses == expected.losses
        assert all(torch.equal(expected_adapter[n], p) for n, p in adapter(resumed).items())
    finally:
        detach_lora(resumed)


def test_checkpoint_callback_runs_every_n_steps(base) -> None:
    model, builder = base
    peft_model = attach_lora(model, LORA, seed=1)
    saved_at: list[int] = []
    try:
        trainer = make_trainer(
            peft_model, builder, SETTINGS.model_copy(update={"checkpoint_every_steps": 3})
        )
        trainer.run(on_checkpoint=lambda: saved_at.append(trainer.step))
    finally:
        detach_lora(peft_model)
    assert saved_at == [3, 6]  # not at the last step (8): the task's end is checkpointed anyway


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
    restored = PlateauStopper(stopper.settings)
    restored.load_state_dict(stopper.state_dict())
    assert restored.state_dict() == stopper.state_dict()


def test_four_bit_without_a_gpu_fails_with_a_clear_message() -> None:
    with pytest.raises(GPURequiredError, match=r"needs a CUDA GPU.*load_in_4bit=false"):
        check_quantization(ModelSettings(load_in_4bit=True), "cpu")
    check_quantization(ModelSettings(load_in_4bit=False), "cpu")
