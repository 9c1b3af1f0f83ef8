"""ml.common: device choice, seeding, env stamps, checkpoint files, metrics sinks."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ml.common import device as device_mod
from ml.common.checkpoints import (
    CheckpointError,
    read_json,
    require_files,
    torch_load,
    torch_save_atomic,
    write_json_atomic,
)
from ml.common.device import DeviceUnavailableError, choose_device
from ml.common.envstamp import config_hash, env_stamp, git_revision, write_env_stamp
from ml.common.seeding import derive_seed, seed_everything
from ml.common.tracking import MetricsLogger

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_common_imports_without_torch() -> None:
    code = (
        "import sys, ml.common.device, ml.common.seeding, ml.common.envstamp, "
        "ml.common.checkpoints, ml.common.tracking\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("found", "preference", "expected"),
    [
        (["cuda", "mps", "cpu"], "auto", "cuda"),
        (["mps", "cpu"], "auto", "mps"),
        (["cpu"], "auto", "cpu"),
        (["cuda", "cpu"], "cpu", "cpu"),
    ],
)
def test_device_order(monkeypatch, found, preference, expected) -> None:
    monkeypatch.setattr(device_mod, "available_devices", lambda: found)
    assert choose_device(preference) == expected


def test_requested_device_must_exist(monkeypatch) -> None:
    monkeypatch.setattr(device_mod, "available_devices", lambda: ["cpu"])
    with pytest.raises(DeviceUnavailableError, match="'cuda' was requested"):
        choose_device("cuda")


def test_available_devices_reflects_torch(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert device_mod.available_devices() == ["cuda", "cpu"]


def test_seed_everything_reproduces_every_generator() -> None:
    def draw() -> tuple:
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(123)
    first = draw()
    seed_everything(123)
    assert draw() == first
    seed_everything(124)
    assert draw() != first


def test_derived_seeds_are_stable_across_processes() -> None:
    code = "from ml.common.seeding import derive_seed; print(derive_seed(7, 'task-a'))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert int(out.stdout) == derive_seed(7, "task-a")
    assert derive_seed(7, "task-a") != derive_seed(7, "task-b") != derive_seed(8, "task-a")
    assert 0 <= derive_seed(7, "x") < 2**31


def test_config_hash_ignores_key_order() -> None:
    assert config_hash({"a": 1, "b": {"c": 2, "d": 3}}) == config_hash(
        {"b": {"d": 3, "c": 2}, "a": 1}
    )
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_env_stamp(tmp_path: Path) -> None:
    stamp = env_stamp(
        {"lr": 0.1}, device="cpu", packages=["torch", "no-such-dist-xyz"], extra={"attempt": 2}
    )
    assert stamp["config_hash"] == config_hash({"lr": 0.1})
    assert stamp["device"] == "cpu" and stamp["attempt"] == 2
    assert stamp["packages"]["torch"] == torch.__version__
    assert stamp["packages"]["no-such-dist-xyz"] is None
    assert stamp["python"] == sys.version.split()[0]
    path = write_env_stamp(tmp_path / "records" / "env.json", stamp)
    assert json.loads(path.read_text())["config"] == {"lr": 0.1}


def test_git_revision(tmp_path: Path) -> None:
    assert git_revision(tmp_path) is None
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(
        [
            "git",
            "-c",
            "user.email=t@t",
            "-c",
            "user.name=t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        cwd=tmp_path,
        check=True,
    )
    revision = git_revision(tmp_path)
    assert revision is not None and len(revision) == 40


def test_checkpoint_json_helpers(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "a" / "state.json", {"step": 3})
    assert read_json(tmp_path / "a" / "state.json") == {"step": 3}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["state.json"]
    with pytest.raises(CheckpointError, match="missing"):
        read_json(tmp_path / "a" / "nope.json")
    (tmp_path / "a" / "bad.json").write_bytes(b"\xff{")
    with pytest.raises(CheckpointError, match=r"bad\.json is corrupt"):
        read_json(tmp_path / "a" / "bad.json")
    with pytest.raises(CheckpointError, match="missing x, y/z"):
        require_files(tmp_path / "a", ["state.json", "x", "y/z"])
    with pytest.raises(CheckpointError, match="does not exist"):
        require_files(tmp_path / "none", ["x"])


def test_torch_checkpoint_helpers(tmp_path: Path) -> None:
    state = {"weights": torch.arange(4.0), "step": 2, "rng": torch.get_rng_state()}
    torch_save_atomic(state, tmp_path / "train.pt")
    loaded = torch_load(tmp_path / "train.pt", map_location="cpu")
    assert torch.equal(loaded["weights"], state["weights"]) and loaded["step"] == 2
    (tmp_path / "broken.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match=r"broken\.pt is corrupt"):
        torch_load(tmp_path / "broken.pt", map_location="cpu")
    with pytest.raises(CheckpointError, match="missing"):
        torch_load(tmp_path / "absent.pt", map_location="cpu")


def test_metrics_go_to_tensorboard_and_not_to_wandb_without_a_key(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with MetricsLogger(tmp_path, run_name="r", config={"a": 1}) as metrics:
        metrics.log(1, loss=0.5)
        assert metrics.wandb_dir is None
    (events,) = (tmp_path / "tensorboard" / "r").glob("events.out.tfevents.*")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert [(e.step, e.value) for e in accumulator.Scalars("loss")] == [(1, 0.5)]


def test_metrics_go_to_wandb_offline_when_a_key_is_set(tmp_path, monkeypatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_API_KEY", "test-key")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    with MetricsLogger(tmp_path, run_name="r", config={"a": 1}, tensorboard=False) as metrics:
        metrics.log(1, loss=0.5)
        run_dir = metrics.wandb_dir
    assert run_dir is not None and run_dir.is_relative_to(tmp_path / "wandb")
    (offline,) = (tmp_path / "wandb").glob("offline-run-*")
    assert list(offline.glob("*.wandb"))
