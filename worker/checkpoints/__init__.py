"""Checkpoint storage behind one interface: a local directory by default, GCS when configured."""

from worker.checkpoints.base import CheckpointError, CheckpointRef, CheckpointStore, open_store

__all__ = ["CheckpointError", "CheckpointRef", "CheckpointStore", "open_store"]
