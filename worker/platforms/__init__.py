"""Which platform this worker runs on, and what it has: hosted notebooks (Kaggle, Colab,
Paperspace Gradient, SageMaker Studio Lab), EC2, a Mac, or plain Linux.

Every input is injectable through a :class:`Probe` (an environment mapping, a filesystem
root, the metadata service URL), so each platform is tested from fixtures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.platforms import ec2, notebooks
from worker.platforms.gpu import Gpus, gpu_inventory
from worker.platforms.probe import Probe
from worker.platforms.session import session_started_at

__all__ = ["Detected", "Gpus", "Probe", "detect", "gpu_inventory"]


@dataclass(frozen=True)
class Detected:
    platform: str
    session_started_at: float | None = None
    details: dict[str, str] = field(default_factory=dict)

    @property
    def spot(self) -> bool:
        """An EC2 spot instance: its end comes as an interruption notice, not a known limit."""
        return self.platform == "ec2" and self.details.get("lifecycle") == "spot"


def detect(probe: Probe, *, platform: str | None = None) -> Detected:
    """Cheap checks first: notebooks by env and files, a Mac by its OS; only then the network.

    A ``platform`` given by the user (``--platform``) is taken as it is: nothing is probed, so
    a worker told it is ``local`` never sends a packet to the metadata address. Only ``ec2``
    still asks its own metadata service for the instance's lifecycle (spot notices need it).
    """
    started = session_started_at(probe)
    if platform:
        details = (ec2.detect_ec2(probe) or {}) if platform == "ec2" else {}
        return Detected(platform, started, details)
    notebook = notebooks.match(probe)
    if notebook is not None:
        return Detected(notebook[0], started, notebook[1])
    if probe.system == "Darwin":
        return Detected("mac", started)
    instance = ec2.detect_ec2(probe)
    if instance is not None:
        return Detected("ec2", started, instance)
    return Detected("local", started)
