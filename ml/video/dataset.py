"""Generate, save and load the rendered trajectory dataset as sharded tensors.

Every sample is a pure function of (seed, index), so a dataset is identical however many
processes generate it and whichever shards survive an interrupted run.

On disk: ``config.json`` (written first), ``shard-00000.pt``... (each renamed into place
when complete) and ``manifest.json`` (written last: a dataset without it is incomplete).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from tqdm import tqdm

from ml.common.checkpoints import write_json_atomic
from ml.video.camera import Camera
from ml.video.configs import DatasetConfig, Style
from ml.video.render import render_video
from ml.video.trajectories import CLASS_NAMES, sample_trajectory

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONFIG = "config.json"


@dataclass
class VideoDataset:
    videos: torch.Tensor  # uint8 (N, T, 3, H, W); uint8 keeps shards a quarter the size
    labels: torch.Tensor  # int64 (N,)
    trajectory_3d: torch.Tensor  # float32 (N, T, 3), world coordinates
    trajectory_cam: torch.Tensor  # float32 (N, T, 3), in the filming camera's coordinates
    intrinsics: torch.Tensor  # float32 (N, 3, 3)
    extrinsics: torch.Tensor  # float32 (N, 3, 4), world -> camera [R | t]
    equations: list[str]
    descriptions: list[str]
    augmentations: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor) -> VideoDataset:
        picked = indices.tolist()
        values: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = (
                value[indices] if torch.is_tensor(value) else [value[i] for i in picked]
            )
        return VideoDataset(**values)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def concat(cls, parts: list[VideoDataset]) -> VideoDataset:
        values: dict[str, Any] = {}
        for f in fields(cls):
            items = [getattr(p, f.name) for p in parts]
            values[f.name] = (
                torch.cat(items)
                if torch.is_tensor(items[0])
                else list(itertools.chain.from_iterable(items))
            )
        return cls(**values)


def dataset_labels(config: DatasetConfig) -> np.ndarray:
    """Exactly balanced labels (up to N mod 4) in a seeded order."""
    labels = np.arange(config.num_samples) % len(CLASS_NAMES)
    return np.random.default_rng([config.seed, 0x1AB]).permutation(labels)


def generate_sample(config: DatasetConfig, index: int, label: int) -> dict[str, Any]:
    rng = np.random.default_rng([config.seed, index])
    cam_cfg = config.camera
    if config.augment:
        camera_index = int(rng.integers(len(cam_cfg.azimuths_deg)))
        roll = float(rng.choice(cam_cfg.rolls_deg))
        phase = float(rng.choice(config.phase_offsets))
        noise = float(rng.choice(config.noise_levels))
        style = cast(Style, str(rng.choice(config.styles)))
    else:
        camera_index, roll, phase, noise = 0, 0.0, 0.0, 0.0
        style = config.styles[0]
    trajectory = sample_trajectory(label, config.num_frames, rng, phase)
    camera = Camera.orbit(
        cam_cfg.distance,
        cam_cfg.azimuths_deg[camera_index],
        cam_cfg.elevation_deg,
        config.image_size,
        cam_cfg.fov_deg,
        roll_deg=roll,
    )
    video = render_video(
        trajectory.points,
        camera,
        config.image_size,
        style=style,
        ball_radius=config.ball_radius,
        trail_length=config.trail_length,
    ).numpy()
    if noise > 0:
        video = np.clip(video + rng.normal(0.0, noise, video.shape), 0.0, 1.0)
    return {
        "video": np.round(video * 255).astype(np.uint8),
        "label": label,
        "trajectory_3d": trajectory.points.astype(np.float32),
        "trajectory_cam": camera.to_camera(trajectory.points).astype(np.float32),
        "intrinsics": camera.intrinsics.astype(np.float32),
        "extrinsics": camera.extrinsics.astype(np.float32),
        "equation": trajectory.equation,
        "description": trajectory.description,
        "augmentation": {
            "camera": camera_index,
            "roll_deg": roll,
            "phase": phase,
            "noise": noise,
            "style": style,
        },
    }


def generate_range(config: DatasetConfig, start: int, stop: int) -> VideoDataset:
    """Samples [start, stop) of the dataset ``config`` describes."""
    labels = dataset_labels(config)
    samples = [generate_sample(config, i, int(labels[i])) for i in range(start, stop)]

    def stack(key: str, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(np.stack([s[key] for s in samples])).to(dtype)

    return VideoDataset(
        videos=stack("video", torch.uint8),
        labels=torch.tensor([s["label"] for s in samples], dtype=torch.int64),
        trajectory_3d=stack("trajectory_3d", torch.float32),
        trajectory_cam=stack("trajectory_cam", torch.float32),
        intrinsics=stack("intrinsics", torch.float32),
        extrinsics=stack("extrinsics", torch.float32),
        equations=[s["equation"] for s in samples],
        descriptions=[s["description"] for s in samples],
        augmentations=[s["augmentation"] for s in samples],
    )


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.pt"


def _shard_ranges(config: DatasetConfig) -> list[tuple[int, int]]:
    n, size = config.num_samples, config.shard_size
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _write_shard(config_json: str, index: int, start: int, stop: int, directory: str) -> int:
    # Runs in a worker process: one thread each, the pool supplies the parallelism.
    torch.set_num_threads(1)
    config = DatasetConfig.model_validate_json(config_json)
    final = Path(directory) / shard_name(index)
    partial = final.with_suffix(".partial")
    torch.save(generate_range(config, start, stop).to_dict(), partial)
    os.replace(partial, final)
    return stop - start


def write_dataset(
    config: DatasetConfig,
    directory: Path,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    show_progress: bool = True,
) -> bool:
    """Generate the dataset into ``directory``, reusing complete shards; False if stopped."""
    directory.mkdir(parents=True, exist_ok=True)
    config_json = config.model_dump_json()
    config_file = directory / CONFIG
    if config_file.exists():
        # The worker count does not change the samples, so a restart may use another.
        existing = DatasetConfig.model_validate_json(config_file.read_text())
        if existing.model_dump(exclude={"workers"}) != config.model_dump(exclude={"workers"}):
            raise ValueError(f"{directory} already holds a dataset with a different config")
    else:
        config_file.write_text(config_json)
    ranges = _shard_ranges(config)
    pending = [i for i in range(len(ranges)) if not (directory / shard_name(i)).exists()]
    done = config.num_samples - sum(ranges[i][1] - ranges[i][0] for i in pending)
    bar = tqdm(total=config.num_samples, initial=done, unit="video", disable=not show_progress)
    workers = min(config.workers, len(pending))
    # Spawned workers: forking a process that has used torch's thread pool can deadlock.
    pool = (
        ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        if workers > 1
        else None
    )
    stopped = False
    try:
        futures: set[Future[int]] = set()
        queue = list(pending)
        while queue or futures:
            if should_stop is not None and should_stop():
                stopped = True
                break
            if pool is None:
                i = queue.pop(0)
                finished = [_write_shard(config_json, i, *ranges[i], str(directory))]
            else:
                while queue and len(futures) < 2 * workers:
                    i = queue.pop(0)
                    futures.add(
                        pool.submit(_write_shard, config_json, i, *ranges[i], str(directory))
                    )
                complete, futures = wait(futures, return_when=FIRST_COMPLETED)
                finished = [f.result() for f in complete]
            for count in finished:
                done += count
                bar.update(count)
                if on_progress is not None:
                    on_progress(done, config.num_samples)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if stopped:
        return False
    manifest = {
        "format_version": FORMAT_VERSION,
        "num_samples": config.num_samples,
        "class_names": list(CLASS_NAMES),
        "shards": [
            {"file": shard_name(i), "start": s, "stop": e} for i, (s, e) in enumerate(ranges)
        ],
    }
    write_json_atomic(directory / MANIFEST, manifest)
    return True


def load_dataset(directory: Path) -> tuple[VideoDataset, DatasetConfig]:
    """Load a complete dataset written by :func:`write_dataset`; fails fast if incomplete."""
    manifest_file = Path(directory) / MANIFEST
    if not manifest_file.is_file():
        raise FileNotFoundError(f"no complete video dataset at {directory} (missing {MANIFEST})")
    manifest = json.loads(manifest_file.read_text())
    if manifest["format_version"] != FORMAT_VERSION:
        raise ValueError(f"{directory}: dataset format {manifest['format_version']} unsupported")
    config = DatasetConfig.model_validate_json((Path(directory) / CONFIG).read_text())
    parts = [
        VideoDataset(**torch.load(Path(directory) / shard["file"], weights_only=True))
        for shard in manifest["shards"]
    ]
    return VideoDataset.concat(parts), config
