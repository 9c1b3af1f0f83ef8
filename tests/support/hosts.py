"""Hosts made of Linux network namespaces: one control-plane host, notebook hosts, a switch.

The topology a test gets (all created here, all removed by ``Topology.close``)::

    root ns (the test, "the laptop") ── mgmt veth 198.19.K.0/30 ──┐
                                                                   cp ns 198.18.K.1
    sw ns: bridge br0 ── veth ── cp ns                              │ eth0
                      ── veth ── nb-a ns 198.18.K.2   (no default route anywhere)
                      ── veth ── nb-b ns 198.18.K.3

Addresses live only on links made here, in the RFC 2544 benchmark range (198.18.0.0/15),
so nothing can route off the machine. The control plane does not forward, so a notebook
reaches the control plane's address and nothing else; the test (root ns) reaches the
control plane through its own link.

Names carry the pid of the test process that made them (``baton-<pid>-<role>``,
``baton-nb-<pid>-<role>``), so a later run removes what a killed run left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "baton-"
USER_PREFIX = "baton-nb-"
RUN_DIR_PREFIX = "/tmp/baton-topo-"
BRIDGE_NET = "198.18"  # 198.18.K.0/24: the bridge every host sits on
MGMT_NET = "198.19"  # 198.19.K.0/30: the test's own link to the control plane
LOCK = Path("/tmp/baton-topology.lock")


def run_ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, a Unix user of its own)"
    for tool in ("ip", "unshare", "setpriv", "useradd", "userdel"):
        if shutil.which(tool) is None:
            return f"needs {tool!r} on PATH"
    probe = f"{PREFIX}probe-{os.getpid()}"
    made = run_ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    run_ip("netns", "delete", probe, check=False)
    return None


def netns_pids(netns: str) -> list[int]:
    listed = run_ip("netns", "pids", netns, check=False).stdout
    return [int(pid) for pid in listed.split()]


def kill_netns(netns: str) -> None:
    """SIGKILL every process in ``netns``: what a notebook's session ending looks like."""
    for _ in range(20):
        pids = netns_pids(netns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def remove_user(name: str) -> None:
    subprocess.run(["userdel", name], check=False, capture_output=True)


def clean_stale() -> None:
    """Remove namespaces, users and run dirs of test processes that no longer exist."""
    owner = re.compile(rf"^{re.escape(PREFIX)}(?:nb-)?(\d+)-")
    for line in run_ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = owner.match(name)
        if match and not _pid_alive(int(match.group(1))):
            kill_netns(name)
            run_ip("netns", "delete", name, check=False)
    for entry in Path("/etc/passwd").read_text().splitlines():
        name = entry.split(":", 1)[0]
        match = owner.match(name)
        if name.startswith(USER_PREFIX) and match and not _pid_alive(int(match.group(1))):
            remove_user(name)
    for run_dir in Path(RUN_DIR_PREFIX).parent.glob(Path(RUN_DIR_PREFIX).name + "*"):
        match = re.match(r"(\d+)-", run_dir.name.removeprefix(Path(RUN_DIR_PREFIX).name))
        if match and not _pid_alive(int(match.group(1))):
            shutil.rmtree(run_dir, ignore_errors=True)


@dataclass(frozen=True)
class Host:
    """A network namespace with one address on the bridge."""

    role: str
    netns: str
    address: str

    def argv(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *map(str, argv)]

    def run(
        self, argv: Sequence[str | os.PathLike[str]], **kwargs: object
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(argv), capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]

    def pids(self) -> list[int]:
        return netns_pids(self.netns)

    def kill_all(self) -> None:
        kill_netns(self.netns)


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: Path


@dataclass(frozen=True)
class NotebookHost(Host):
    """A notebook: its own namespace, run as its own Unix user, the hidden paths unmounted.

    Each command gets a private mount namespace in which every path of ``hidden`` (the
    repository, the control plane's data) is covered by an empty root-only tmpfs, then drops
    to the notebook user. The user's own permissions do the rest.
    """

    user: User = field(kw_only=True)
    hidden: tuple[Path, ...] = field(kw_only=True)

    def argv(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        cover = "".join(f"mount -t tmpfs -o size=4k,mode=000 none '{p}' && " for p in self.hidden)
        script = (
            f"{cover}exec setpriv --reuid={self.user.uid} --regid={self.user.gid} "
            f'--init-groups -- "$@"'
        )
        return super().argv(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"]
            + [str(a) for a in argv]
        )

    def env(self, **extra: str) -> dict[str, str]:
        """A notebook's environment: nothing of the test runner's own leaks in."""
        env = {
            "HOME": str(self.user.home),
            "USER": self.user.name,
            "LOGNAME": self.user.name,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "TMPDIR": str(self.user.home / "tmp"),
            "PYTHONUNBUFFERED": "1",
        }
        env.update(extra)
        return env


@dataclass
class Topology:
    """The namespaces, links, users and run dir of one test; ``close`` removes them all."""

    tag: str
    index: int
    run_dir: Path
    switch: str
    control_plane: Host
    mgmt_device: str
    notebooks: dict[str, NotebookHost] = field(default_factory=dict)
    users: list[str] = field(default_factory=list)

    @property
    def laptop_address(self) -> str:
        return f"{MGMT_NET}.{self.index}.1"

    def _namespace(self, role: str) -> str:
        name = f"{PREFIX}{self.tag}-{role}"
        run_ip("netns", "add", name)
        run_ip("-n", name, "link", "set", "lo", "up")
        # IPv4 only: no link-local v6 addresses, no neighbour discovery on our links.
        subprocess.run(
            ["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
            check=False,
            capture_output=True,
        )
        return name

    def _plug(self, netns: str, role: str, address: str) -> None:
        """A veth from ``netns`` (eth0) to a port of the switch's bridge."""
        port = f"p-{role}"
        run_ip(
            "-n",
            netns,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            port,
            "netns",
            self.switch,
        )
        run_ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        run_ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        run_ip("-n", netns, "link", "set", "eth0", "up")

    def add_notebook(self, role: str, hidden: Sequence[Path]) -> NotebookHost:
        netns = self._namespace(role)
        address = f"{BRIDGE_NET}.{self.index}.{len(self.notebooks) + 2}"
        self._plug(netns, role, address)
        user = self._user(role)
        host = NotebookHost(role, netns, address, user=user, hidden=tuple(hidden))
        self.notebooks[role] = host
        return host

    def _user(self, role: str) -> User:
        name = f"{USER_PREFIX}{self.tag}-{role}"
        homes = self.run_dir / "homes"
        homes.mkdir(mode=0o755, exist_ok=True)
        home = homes / role
        subprocess.run(
            [
                "useradd",
                "--no-create-home",
                "--home-dir",
                str(home),
                "--shell",
                "/bin/sh",
                "--user-group",
                "--no-log-init",
                name,
            ],
            check=True,
            capture_output=True,
        )
        self.users.append(name)
        entry = pwd.getpwnam(name)
        uid, gid = entry.pw_uid, entry.pw_gid
        (home / "tmp").mkdir(parents=True)
        for path in (home, home / "tmp"):
            os.chown(path, uid, gid)
        home.chmod(0o700)
        return User(name, uid, gid, home)

    def close(self) -> None:
        for host in self.notebooks.values():
            host.kill_all()
        self.control_plane.kill_all()
        for name in self.users:
            remove_user(name)
        for netns in [
            *(h.netns for h in self.notebooks.values()),
            self.control_plane.netns,
            self.switch,
        ]:
            run_ip("netns", "delete", netns, check=False)
        # The mgmt veth went with its peer's namespace; make sure of it.
        run_ip("link", "delete", self.mgmt_device, check=False)
        shutil.rmtree(self.run_dir, ignore_errors=True)


def free_mgmt_index() -> int:
    """A K no other live run uses for its 198.19.K.0/30 link in the root namespace."""
    used = {
        int(m.group(1))
        for m in re.finditer(
            rf"inet {re.escape(MGMT_NET)}\.(\d+)\.", run_ip("-4", "-o", "addr").stdout
        )
    }
    for index in range(1 + secrets.randbelow(200), 255):
        if index not in used:
            return index
    for index in range(1, 255):
        if index not in used:
            return index
    raise RuntimeError("every 198.19.K.0/30 management link is taken")


@contextlib.contextmanager
def topology() -> Iterator[Topology]:
    """A switch, a control-plane host linked to the test, and room for notebook hosts."""
    clean_stale()
    tag = f"{os.getpid()}-{secrets.token_hex(2)}"
    run_dir = Path(f"{RUN_DIR_PREFIX}{tag}")
    run_dir.mkdir(mode=0o755)
    run_dir.chmod(0o755)
    LOCK.touch()
    with LOCK.open() as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        index = free_mgmt_index()
        mgmt = f"bt{tag.replace('-', '')}"[:15]
        topo = Topology(
            tag=tag,
            index=index,
            run_dir=run_dir,
            switch="",
            control_plane=Host("cp", "", f"{BRIDGE_NET}.{index}.1"),
            mgmt_device=mgmt,
        )
        try:
            topo.switch = topo._namespace("sw")
            run_ip("-n", topo.switch, "link", "add", "br0", "type", "bridge")
            run_ip("-n", topo.switch, "link", "set", "br0", "up")
            cp_ns = topo._namespace("cp")
            topo.control_plane = Host("cp", cp_ns, topo.control_plane.address)
            topo._plug(cp_ns, "cp", topo.control_plane.address)
            run_ip("link", "add", mgmt, "type", "veth", "peer", "name", "mgmt0", "netns", cp_ns)
            run_ip("addr", "add", f"{MGMT_NET}.{index}.1/30", "dev", mgmt)
            run_ip("link", "set", mgmt, "up")
            run_ip("-n", cp_ns, "addr", "add", f"{MGMT_NET}.{index}.2/30", "dev", "mgmt0")
            run_ip("-n", cp_ns, "link", "set", "mgmt0", "up")
            # The test reaches the control plane's bridge address through its own link.
            run_ip(
                "route",
                "add",
                f"{BRIDGE_NET}.{index}.0/24",
                "via",
                f"{MGMT_NET}.{index}.2",
                "dev",
                mgmt,
            )
        except BaseException:
            topo.close()
            raise
    try:
        yield topo
    finally:
        topo.close()
