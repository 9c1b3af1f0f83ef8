"""Experiment dispatch on Redis: ready sets per (capability class, owner lane), leases with
fencing tokens."""

from orchestrator.dispatch.capability import Capability, Requirement, capability_class
from orchestrator.dispatch.queue import Claimed, Dispatcher, Lane, ReadyQueue, lanes_served

__all__ = [
    "Capability",
    "Claimed",
    "Dispatcher",
    "Lane",
    "ReadyQueue",
    "Requirement",
    "capability_class",
    "lanes_served",
]
