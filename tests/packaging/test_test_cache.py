"""The wheel/venv cache of the install harness forgets entries nobody has used for days."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.support import install


def test_entries_unused_for_days_are_pruned_and_recent_ones_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(install, "CACHE_ROOT", tmp_path)
    old = time.time() - install.KEEP_UNUSED - 60
    stale_venv, stale_legacy, fresh_wheel = (
        tmp_path / "cp-stale",
        tmp_path / "wheel-legacy",  # made before the last-used marker existed
        tmp_path / "wheel-fresh",
    )
    for entry in (stale_venv, stale_legacy, fresh_wheel):
        (entry / "bin").mkdir(parents=True)
    (stale_venv / install.LAST_USED).touch()
    os.utime(stale_venv / install.LAST_USED, (old, old))
    os.utime(stale_legacy, (old, old))
    (fresh_wheel / install.LAST_USED).touch()
    os.utime(fresh_wheel, (old, old))  # the marker, not the directory's time, decides

    install._prune_unused()

    assert not stale_venv.exists()
    assert not stale_legacy.exists()
    assert fresh_wheel.is_dir()
