"""Platform detection from fixtures of each platform's environment and files."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.platforms import standins
from tests.support import hosts
from worker.platforms import Detected, Probe, detect, gpu_inventory
from worker.platforms.gpu import Gpus
from worker.platforms.session import session_started_at
from worker.system import describe_host

# Nothing listens here (the port is taken and closed): the EC2 probe is refused at once.
CLOSED = "http://127.0.0.1:9"
BLACKHOLE_ADDRESS = "198.18.255.254"  # benchmark range; routed only inside the test's namespace


def make_probe(
    root: Path,
    env: dict[str, str] | None = None,
    dirs: tuple[str, ...] = (),
    system: str = "Linux",
    imds_url: str = CLOSED,
) -> Probe:
    for d in dirs:
        (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return Probe(env={"PATH": "", **(env or {})}, root=root, system=system, imds_url=imds_url)


@pytest.mark.parametrize(
    ("platform", "env", "dirs", "details"),
    [
        (
            "kaggle",
            {"KAGGLE_KERNEL_RUN_TYPE": "Batch", "KAGGLE_URL_BASE": "https://www.kaggle.com"},
            ("/kaggle/working", "/kaggle/input"),
            {"KAGGLE_KERNEL_RUN_TYPE": "Batch"},
        ),
        (
            "colab",
            {"COLAB_RELEASE_TAG": "release-colab_20260101-060000_RC00", "COLAB_GPU": "1"},
            ("/content/sample_data",),
            {"COLAB_RELEASE_TAG": "release-colab_20260101-060000_RC00"},
        ),
        (
            "paperspace",
            {"PAPERSPACE_NOTEBOOK_REPO_ID": "r8gd2eq", "PAPERSPACE_NOTEBOOK_ID": "nb1x2y3"},
            ("/notebooks", "/storage"),
            {"PAPERSPACE_NOTEBOOK_ID": "nb1x2y3"},
        ),
        (
            "studiolab",
            {"HOME": "/home/studio-lab-user", "USER": "studio-lab-user"},
            ("/home/studio-lab-user/sagemaker-studiolab-notebooks",),
            {},
        ),
    ],
)
def test_hosted_notebooks(
    tmp_path: Path,
    platform: str,
    env: dict[str, str],
    dirs: tuple[str, ...],
    details: dict[str, str],
) -> None:
    found = detect(make_probe(tmp_path, env, dirs))
    assert found.platform == platform
    assert found.details == details
    assert not found.spot


def test_kaggle_cli_credentials_on_a_laptop_are_not_kaggle(tmp_path: Path) -> None:
    home = tmp_path / "home" / "me"
    (home / ".kaggle").mkdir(parents=True)
    (home / ".kaggle" / "kaggle.json").write_text('{"username": "me", "key": "abc"}')
    env = {
        "HOME": str(home),
        "KAGGLE_USERNAME": "me",
        "KAGGLE_KEY": "abc",
        "KAGGLE_CONFIG_DIR": str(home),
    }
    assert detect(make_probe(tmp_path, env)).platform == "local"


@pytest.mark.parametrize(
    ("env", "dirs"),
    [
        ({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, ()),  # the variable alone, no /kaggle/working
        ({}, ("/kaggle/working",)),  # a /kaggle directory alone
        ({"COLAB_RELEASE_TAG": "x"}, ()),
        ({"HOME": "/home/studio-lab-user"}, ()),
    ],
)
def test_half_a_signature_is_not_a_platform(
    tmp_path: Path, env: dict[str, str], dirs: tuple[str, ...]
) -> None:
    assert detect(make_probe(tmp_path, env, dirs)).platform == "local"


def test_ec2_spot_through_imdsv2(tmp_path: Path) -> None:
    imds = standins.Imds(lifecycle="spot", instance_type="g5.xlarge")
    with standins.serve(imds) as url:
        found = detect(make_probe(tmp_path, imds_url=url))
    assert found == Detected("ec2", None, {"instance_type": "g5.xlarge", "lifecycle": "spot"})
    assert found.spot
    assert imds.tokens, "the probe must use IMDSv2 (a session token), not IMDSv1"


def test_ec2_on_demand_has_no_spot_notice(tmp_path: Path) -> None:
    with standins.serve(standins.Imds(lifecycle="on-demand")) as url:
        found = detect(make_probe(tmp_path, imds_url=url))
    assert found.platform == "ec2" and not found.spot


def test_imds_can_be_disabled(tmp_path: Path) -> None:
    with standins.serve(standins.Imds()) as url:
        found = detect(make_probe(tmp_path, {"AWS_EC2_METADATA_DISABLED": "true"}, imds_url=url))
    assert found.platform == "local"


@pytest.mark.parametrize("platform", ["local", "kaggle", "mac"])
def test_a_given_platform_skips_detection(tmp_path: Path, platform: str) -> None:
    imds = standins.Imds(lifecycle="spot")
    with standins.serve(imds) as url:
        found = detect(make_probe(tmp_path, imds_url=url), platform=platform)
        info = describe_host(
            name="w", overrides={"platform": platform}, probe=make_probe(tmp_path, imds_url=url)
        )
    assert found == Detected(platform, None, {}) and info["platform"] == platform
    assert not imds.tokens, "a worker told its platform must not ask the metadata service"


def test_a_given_ec2_still_reads_its_lifecycle(tmp_path: Path) -> None:
    imds = standins.Imds(lifecycle="spot", instance_type="g5.xlarge")
    with standins.serve(imds) as url:
        found = detect(make_probe(tmp_path, imds_url=url), platform="ec2")
    assert found == Detected("ec2", None, {"instance_type": "g5.xlarge", "lifecycle": "spot"})
    assert found.spot, "spot notices need the lifecycle even when --platform ec2 is given"


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: what a filtered metadata address looks like."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


@pytest.mark.parametrize("where", ["closed port", "silent server"])
def test_ec2_probe_off_ec2_costs_under_half_a_second(
    tmp_path: Path, where: str, silent_server: str
) -> None:
    url = {"closed port": CLOSED, "silent server": silent_server}[where]
    start = time.monotonic()
    found = detect(make_probe(tmp_path, imds_url=url))
    elapsed = time.monotonic() - start
    assert found.platform == "local"
    assert elapsed < 0.5, f"{where}: detection took {elapsed:.3f}s"


# Off EC2 the metadata address is usually a black hole: SYNs leave and nothing answers. In a
# namespace of this test the address is routed onto a veth whose peer is down, with a fixed
# neighbour entry (no ARP to fail), so every packet is dropped on a link the test made: the
# probe meets the same silence without a packet leaving the machine.
BLACKHOLED = f"""
import sys, time
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from worker.platforms import Probe, detect
start = time.monotonic()
found = detect(Probe(env={{"PATH": ""}}, root=Path(sys.argv[1]), system="Linux",
                     imds_url="http://{BLACKHOLE_ADDRESS}"))
print(found.platform, time.monotonic() - start)
"""


def test_ec2_probe_into_a_black_hole_costs_under_half_a_second(tmp_path: Path) -> None:
    if reason := hosts.unavailable():
        pytest.skip(reason)
    netns = f"{hosts.PREFIX}{os.getpid()}-blackhole"
    hosts.run_ip("netns", "add", netns)
    try:
        inside = ["ip", "netns", "exec", netns]
        for args in (
            ("link", "set", "lo", "up"),
            ("link", "add", "hole0", "type", "veth", "peer", "name", "hole1"),
            ("link", "set", "hole0", "up"),  # hole1 stays down: what reaches it is dropped
            ("route", "add", f"{BLACKHOLE_ADDRESS}/32", "dev", "hole0"),
            ("neigh", "add", BLACKHOLE_ADDRESS, "lladdr", "02:00:00:00:00:01", "dev", "hole0"),
        ):
            subprocess.run([*inside, "ip", *args], check=True)
        ran = subprocess.run(
            [*inside, sys.executable, "-c", BLACKHOLED, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    finally:
        hosts.kill_netns(netns)
        hosts.run_ip("netns", "delete", netns, check=False)
    platform, elapsed = ran.stdout.split()
    assert platform == "local"
    assert float(elapsed) < 0.5, f"detection into a black hole took {elapsed}s"


def _fake_torch(*, mps: bool) -> SimpleNamespace:
    return SimpleNamespace(
        cuda=SimpleNamespace(is_available=lambda: False),
        backends=SimpleNamespace(mps=SimpleNamespace(is_available=lambda: mps)),
        mps=SimpleNamespace(recommended_max_memory=lambda: 21 * 1024**3),
    )


def test_mac_with_mps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", _fake_torch(mps=True))
    probe = make_probe(tmp_path, system="Darwin")
    assert detect(probe).platform == "mac"
    assert gpu_inventory(probe) == Gpus(name="Apple MPS", count=1, memory_mb=21 * 1024)


def test_plain_linux_does_not_import_torch_for_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # importing it would raise
    probe = make_probe(tmp_path)
    assert detect(probe).platform == "local"
    assert gpu_inventory(probe) == Gpus()


def test_gpus_from_nvidia_smi(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\nprintf 'Tesla T4, 15360\\nTesla T4, 15100\\n'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    probe = make_probe(tmp_path, {"PATH": str(bin_dir)})
    assert gpu_inventory(probe) == Gpus(name="Tesla T4", count=2, memory_mb=15100)


def test_session_start_is_when_pid_1_started(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "1").mkdir(parents=True)
    # starttime (field 22) is 123456 ticks after boot; the command holds a space and a ')'.
    fields = ["S"] + ["0"] * 18 + ["123456"] + ["0"] * 10
    (proc / "1" / "stat").write_text(f"1 (my init) x) {' '.join(fields)}\n")
    (proc / "stat").write_text("cpu  1 2 3\nbtime 1767225600\nprocesses 42\n")
    probe = make_probe(tmp_path)
    assert session_started_at(probe) == pytest.approx(1767225600 + 123456 / 100)


def test_registration_payload(tmp_path: Path) -> None:
    probe = make_probe(
        tmp_path,
        {"KAGGLE_KERNEL_RUN_TYPE": "Interactive", "BATON_PLATFORM_ACCOUNT": "alice"},
        ("/kaggle/working",),
    )
    info = describe_host(name="w1", overrides={"gpu_count": None}, probe=probe)
    assert info["platform"] == "kaggle" and info["account"] == "alice"
    assert info["name"] == "w1" and info["gpu_count"] == 0
