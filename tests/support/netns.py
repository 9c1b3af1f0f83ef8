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
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

NET = "198.19"
LOCK = Path("/tmp/baton-topology.lock")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def unavailable() -> str | None:
    """Why a namespace cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs 'ip' (iproute2) on PATH"
    probe = f"baton-{os.getpid()}-probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    _ip("netns", "delete", probe, check=False)
    return None


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
        _ip("link", "set", self.link, "down")

    def mend(self) -> None:
        _ip("link", "set", self.link, "up")

    def pids(self) -> list[int]:
        return [int(pid) for pid in _ip("netns", "pids", self.netns, check=False).stdout.split()]


def _free_index() -> int:
    """A K no address of the root namespace uses in 198.19.K.0/24."""
    listed = _ip("-4", "-o", "addr").stdout
    used = {int(k) for k in re.findall(rf"inet {re.escape(NET)}\.(\d+)\.", listed)}
    free = [k for k in range(1, 255) if k not in used]
    if not free:
        raise RuntimeError(f"every {NET}.K.0/30 link is taken")
    return secrets.choice(free)


@contextlib.contextmanager
def island() -> Iterator[Island]:
    """A namespace linked to this one by a veth pair; removed, with its processes, on exit."""
    tag = f"{os.getpid()}-{secrets.token_hex(2)}"
    netns = f"baton-{tag}-island"
    link = f"bi{tag.replace('-', '')}"[:15]
    LOCK.touch()
    with LOCK.open() as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        index = _free_index()
        made = Island(netns, link, f"{NET}.{index}.1", f"{NET}.{index}.2")
        try:
            _ip("netns", "add", netns)
            _ip("-n", netns, "link", "set", "lo", "up")
            _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns)
            _ip("addr", "add", f"{made.outside}/30", "dev", link)
            _ip("link", "set", link, "up")
            _ip("-n", netns, "addr", "add", f"{made.inside}/30", "dev", "eth0")
            _ip("-n", netns, "link", "set", "eth0", "up")
        except BaseException:
            _remove(made)
            raise
    try:
        yield made
    finally:
        _remove(made)


def _remove(made: Island) -> None:
    for _ in range(20):
        pids = made.pids()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
    _ip("netns", "delete", made.netns, check=False)
    _ip("link", "delete", made.link, check=False)  # gone with its peer already; make sure
