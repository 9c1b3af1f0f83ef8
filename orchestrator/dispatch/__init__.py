"""Experiment dispatch on Redis: ready sets per capability class, leases with fencing tokens."""

from orchestrator.dispatch.capability import Capability, Requirement, capability_class
from orchestrator.dispatch.queue import Claimed, Dispatcher

__all__ = ["Capability", "Claimed", "Dispatcher", "Requirement", "capability_class"]
