"""A worker's own network namespace whose one link to the test's namespace can be cut.

::

    root ns (the test, the control plane) 198.19.K.1 ── veth ── 198.19.K.2 island ns

The addresses are in the RFC 2544 benchmark range and the island has no default route: it
reaches the root namespace's end of its link and nothing else. The layout and names follow
tests/support/hosts.py (the topology harness; K picked under its lock, names
``baton-<pid>-...``), so neither takes the other's addresses and its sweep of dead runs removes
a namespace a killed test left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tests.support.hosts import (
    LOCK,
    MGMT_NET,
    free_mgmt_index,
    kill_netns,
    netns_pids,
    run_ip,
)


@dataclass(frozen=True)
class Island:
    netns: str
    link: str  # the root namespace's end of the veth
    outside: str  # the root namespace's address on the link
    inside: str  # the island's address

    def argv(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        """``argv`` run inside the island (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.netns, *map(str, argv)]

    def cut(self) -> None:
        """Take the link down: packets neither way, for every connection, at once."""
        run_ip("link", "set", self.link, "down")

    def mend(self) -> None:
        run_ip("link", "set", self.link, "up")

    def pids(self) -> list[int]:
        return netns_pids(self.netns)


@contextlib.contextmanager
def island() -> Iterator[Island]:
    """A namespace linked to this one by a veth pair; removed, with its processes, on exit."""
    tag = f"{os.getpid()}-{secrets.token_hex(2)}"
    netns = f"baton-{tag}-island"
    link = f"bi{tag.replace('-', '')}"[:15]
    LOCK.touch()
    with LOCK.open() as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        index = free_mgmt_index()
        made = Island(netns, link, f"{MGMT_NET}.{index}.1", f"{MGMT_NET}.{index}.2")
        try:
            run_ip("netns", "add", netns)
            run_ip("-n", netns, "link", "set", "lo", "up")
            run_ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns)
            run_ip("addr", "add", f"{made.outside}/30", "dev", link)
            run_ip("link", "set", link, "up")
            run_ip("-n", netns, "addr", "add", f"{made.inside}/30", "dev", "eth0")
            run_ip("-n", netns, "link", "set", "eth0", "up")
        except BaseException:
            _remove(made)
            raise
    try:
        yield made
    finally:
        _remove(made)


def _remove(made: Island) -> None:
    kill_netns(made.netns)
    run_ip("netns", "delete", made.netns, check=False)
    run_ip("link", "delete", made.link, check=False)  # gone with its peer already; make sure
