"""Checkpoints in a local (or shared, mounted) directory."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from worker.checkpoints.base import (
    MANIFEST,
    CheckpointError,
    CheckpointRef,
    build_manifest,
    parse_manifest,
    verify_file,
)


class LocalCheckpointStore:
    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.url = self.root.as_uri()

    def _dir(self, ref: CheckpointRef) -> Path:
        return self.root / ref.key

    def upload(self, *, experiment_id: str, attempt: int, step: int, source: Path) -> CheckpointRef:
        ref = CheckpointRef(step=step, attempt=attempt, experiment_id=experiment_id)
        target = self._dir(ref)
        manifest = build_manifest(ref, source)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copy beside the target, then rename: a crash mid-copy leaves only a hidden temp dir.
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        shutil.copytree(source, tmp)
        (tmp / MANIFEST).unlink(missing_ok=True)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
        manifest_tmp = target / f".{MANIFEST}.tmp"
        manifest_tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(manifest_tmp, target / MANIFEST)
        return ref

    def list(self, *, experiment_id: str) -> list[CheckpointRef]:
        base = self.root / experiment_id
        if not base.is_dir():
            return []
        refs = []
        for child in base.iterdir():
            if child.name.startswith(".") or not (child / MANIFEST).is_file():
                continue
            refs.append(CheckpointRef.from_key(f"{experiment_id}/{child.name}"))
        return sorted(refs)

    def download(self, ref: CheckpointRef, dest: Path) -> Path:
        source = self._dir(ref)
        manifest_path = source / MANIFEST
        if not manifest_path.is_file():
            raise CheckpointError(f"checkpoint {ref.key} not found in {self.url}")
        manifest = parse_manifest(manifest_path.read_bytes(), where=str(manifest_path))
        dest.mkdir(parents=True, exist_ok=True)
        for entry in manifest["files"]:
            src = source / entry["path"]
            verify_file(src, entry)
            out = dest / entry["path"]
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out)
        return dest

    def delete(self, ref: CheckpointRef) -> None:
        target = self._dir(ref)
        (target / MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(target, ignore_errors=True)

    def size_bytes(self, ref: CheckpointRef) -> int:
        target = self._dir(ref)
        return sum(
            p.stat().st_size for p in target.rglob("*") if p.is_file() and p.name != MANIFEST
        )
