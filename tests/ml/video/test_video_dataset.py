from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from video_helpers import tiny_dataset_config

from ml.video.dataset import (
    CONFIG,
    MANIFEST,
    generate_range,
    load_dataset,
    shard_name,
    write_dataset,
)
from ml.video.trajectories import CLASS_NAMES


def test_generates_the_requested_images_labels_and_trajectories(tiny_dataset_dir: Path) -> None:
    data, config = load_dataset(tiny_dataset_dir)
    n, t = config.num_samples, config.num_frames
    assert data.videos.shape == (n, t, 3, 16, 16)
    assert data.videos.dtype == torch.uint8
    assert data.labels.shape == (n,)
    assert data.trajectory_3d.shape == (n, t, 3)
    assert data.trajectory_cam.shape == (n, t, 3)
    assert len(data.equations) == len(data.descriptions) == len(data.augmentations) == n
    assert all(e.startswith("p(t) = ") for e in data.equations)
    for label, description in zip(data.labels.tolist(), data.descriptions, strict=True):
        assert description.startswith(f"A {CLASS_NAMES[label]} trajectory")


def test_classes_are_balanced(tiny_dataset_dir: Path) -> None:
    data, _ = load_dataset(tiny_dataset_dir)
    assert data.labels.bincount().tolist() == [12, 12, 12, 12]


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = generate_range(tiny_dataset_config(), 0, 8)
    b = generate_range(tiny_dataset_config(), 0, 8)
    c = generate_range(tiny_dataset_config(seed=8), 0, 8)
    assert torch.equal(a.videos, b.videos) and a.equations == b.equations
    assert not torch.equal(a.videos, c.videos)


def test_a_sample_does_not_depend_on_its_shard() -> None:
    whole = generate_range(tiny_dataset_config(), 0, 12)
    part = generate_range(tiny_dataset_config(), 5, 12)
    assert torch.equal(whole.videos[5:], part.videos)


def test_parallel_generation_matches_sequential(tmp_path: Path) -> None:
    sequential, parallel = tmp_path / "seq", tmp_path / "par"
    config = tiny_dataset_config(num_samples=24, shard_size=8)
    assert write_dataset(config, sequential, show_progress=False)
    assert write_dataset(config.model_copy(update={"workers": 2}), parallel, show_progress=False)
    a, _ = load_dataset(sequential)
    b, _ = load_dataset(parallel)
    assert torch.equal(a.videos, b.videos)
    assert torch.equal(a.trajectory_3d, b.trajectory_3d)


def test_augmentation_creates_variations() -> None:
    augmented = generate_range(tiny_dataset_config(num_samples=64), 0, 64)
    seen = {key: {a[key] for a in augmented.augmentations} for key in augmented.augmentations[0]}
    assert seen["style"] == {"dot", "trail"}
    assert len(seen["noise"]) >= 3
    assert seen["camera"] == {0, 1, 2}
    assert seen["roll_deg"] == {-5.0, 5.0}
    assert len(seen["phase"]) == 3
    plain = generate_range(tiny_dataset_config(num_samples=64, augment=False), 0, 64)
    assert {a["noise"] for a in plain.augmentations} == {0.0}
    assert {a["style"] for a in plain.augmentations} == {"dot"}
    # Noise-free frames are black away from the object; noisy ones are not.
    assert int((plain.videos == 0).sum()) > int((augmented.videos == 0).sum())


def test_frames_show_the_object_where_its_camera_projects_it() -> None:
    data = generate_range(tiny_dataset_config(augment=False), 0, 8)
    for i in range(len(data)):
        cam = data.trajectory_cam[i]
        # trajectory_cam is the world trajectory seen through the sample's extrinsics.
        rotation, translation = data.extrinsics[i, :, :3], data.extrinsics[i, :, 3]
        torch.testing.assert_close(cam, data.trajectory_3d[i] @ rotation.T + translation)
        uv = (cam[:, :2] / cam[:, 2:]) @ data.intrinsics[i, :2, :2].T + data.intrinsics[i, :2, 2]
        for frame, (u, v) in zip(data.videos[i], uv.tolist(), strict=True):
            if 0 <= u < 16 and 0 <= v < 16:
                row, col = divmod(int(frame.float().sum(0).argmax()), 16)
                assert (row, col) == (math.floor(v), math.floor(u))


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    config = tiny_dataset_config(num_samples=20, shard_size=8)
    assert write_dataset(config, tmp_path, show_progress=False)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert [s["file"] for s in manifest["shards"]] == [shard_name(i) for i in range(3)]
    loaded, loaded_config = load_dataset(tmp_path)
    expected = generate_range(config, 0, 20)
    assert loaded_config == config
    for name, value in expected.to_dict().items():
        other = getattr(loaded, name)
        assert torch.equal(value, other) if torch.is_tensor(value) else value == other


def test_restart_keeps_finished_shards(tmp_path: Path) -> None:
    config = tiny_dataset_config(num_samples=24, shard_size=8)
    calls: list[int] = []
    # Stop after the first shard, as an interrupted job would.
    finished = write_dataset(
        config,
        tmp_path,
        show_progress=False,
        on_progress=lambda done, total: calls.append(done),
        should_stop=lambda: bool(calls),
    )
    assert not finished
    assert not (tmp_path / MANIFEST).exists()
    first = tmp_path / shard_name(0)
    stamp = first.stat().st_mtime_ns
    assert write_dataset(config.model_copy(update={"workers": 2}), tmp_path, show_progress=False)
    assert first.stat().st_mtime_ns == stamp
    loaded, _ = load_dataset(tmp_path)
    assert torch.equal(loaded.videos, generate_range(config, 0, 24).videos)


def test_loading_an_incomplete_dataset_fails_fast(tmp_path: Path) -> None:
    (tmp_path / CONFIG).write_text(tiny_dataset_config().model_dump_json())
    with pytest.raises(FileNotFoundError, match="manifest"):
        load_dataset(tmp_path)


def test_a_directory_holding_another_dataset_is_refused(tiny_dataset_dir: Path) -> None:
    with pytest.raises(ValueError, match="different config"):
        write_dataset(tiny_dataset_config(seed=99), tiny_dataset_dir, show_progress=False)
