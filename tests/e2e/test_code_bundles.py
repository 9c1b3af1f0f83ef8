"""Code travels with the experiment: bundles, git refs, requirements, the ml wheel.

Real `baton serve` and real worker agents (--platform local) whose work dirs are apart from
the control plane's data dir; pip runs for real, with no package index (PIP_NO_INDEX).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from orchestrator.platforms.wheel import ML
from tests.e2e.conftest import ADMIN, Baton
from tests.support.api import create_worker_token
from tests.support.cli import Cli
from tests.support.wheels import write_wheel

CAP_MB = 1


def _worker_env(baton: Baton) -> dict[str, str]:
    # Nothing may reach a package index: requirements come from files or fail.
    return {**baton.stack.env, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _start_worker(baton: Baton, name: str) -> Any:
    return baton.start_worker(name, "--platform", "local", env=_worker_env(baton))


def _targz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def _upload(baton: Baton, body: bytes | Iterator[bytes]) -> httpx.Response:
    return baton.http.post(
        "/api/v1/bundles", content=body, headers={"Content-Type": "application/gzip"}
    )


def _stored(baton: Baton) -> list[str]:
    root = baton.settings.data_dir / "bundles"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_bundle_upload_is_content_addressed_capped_and_checked(
    baton_factory: Callable[..., Baton],
) -> None:
    baton = baton_factory(BATON_BUNDLE_MAX_MB=str(CAP_MB))
    good = _targz([_file("main.py", b"print('hi')\n"), _file("pkg/mod.py", b"X = 1\n")])
    hexdigest = hashlib.sha256(good).hexdigest()

    first = _upload(baton, good)
    assert first.status_code == 201, first.text
    assert first.json() == {"digest": f"sha256:{hexdigest}", "size": len(good)}
    again = _upload(baton, good)
    assert again.status_code == 200 and again.json() == first.json()
    assert _stored(baton) == [f"sha256/{hexdigest}.tar.gz"]

    # Over the cap: refused whether the length is declared or the body comes chunked.
    big = os.urandom(CAP_MB * 1024 * 1024 + 4096)
    declared = _upload(baton, big)
    chunked = _upload(baton, iter([big[i : i + 65536] for i in range(0, len(big), 65536)]))
    for refused in (declared, chunked):
        assert refused.status_code == 413, refused.text
        assert f"{CAP_MB} MB cap" in refused.json()["detail"]
    assert _stored(baton) == [f"sha256/{hexdigest}.tar.gz"], "nothing of a refused upload stays"

    unsafe = {
        "absolute path": _targz([_file("/etc/evil", b"x")]),
        "parent dir": _targz([_file("../evil", b"x")]),
        "link outside": _targz([_special("link", tarfile.SYMTYPE, "../../etc/passwd")]),
        "device": _targz([_special("dev", tarfile.CHRTYPE)]),
        "not gzip": b"just some bytes, not an archive",
    }
    for what, body in unsafe.items():
        reply = _upload(baton, body)
        assert reply.status_code == 422, (what, reply.text)
    assert _stored(baton) == [f"sha256/{hexdigest}.tar.gz"]

    # Only users upload.
    anonymous = httpx.post(f"{baton.stack.url}/api/v1/bundles", content=good)
    assert anonymous.status_code == 401
    as_worker = httpx.post(
        f"{baton.stack.url}/api/v1/bundles",
        content=good,
        headers={"Authorization": f"Bearer {baton.worker_token}"},
    )
    assert as_worker.status_code == 403

    # Submitting: the bundle must exist; code takes exactly one well-formed form.
    unknown = "sha256:" + "0" * 64
    bad_specs: list[dict[str, Any]] = [
        {"bundle": unknown},
        {"bundle": first.json()["digest"], "git": "https://example.test/r.git"},
        {"git": "ext::sh -c touch% /tmp/pwned", "ref": "main"},
        {"git": "https://example.test/r.git", "ref": "--upload-pack=evil"},
        {"bundle": "md5:abc"},
    ]
    for code in bad_specs:
        reply = baton.http.post(
            "/api/v1/experiments",
            json={"name": "x", "kind": "command", "config": {"command": "true"}, "code": code},
        )
        assert reply.status_code == 422, (code, reply.text)
    missing = baton.http.post(
        "/api/v1/experiments",
        json={
            "name": "x",
            "kind": "command",
            "config": {"command": "true"},
            "code": {"bundle": unknown},
        },
    )
    assert f"no bundle {unknown}" in missing.json()["detail"]
    for requirements in (["--index-url=https://evil.test"], ["a\nb"], ["x"] * 201):
        reply = baton.http.post(
            "/api/v1/experiments",
            json={
                "name": "x",
                "kind": "command",
                "config": {"command": "true"},
                "requirements": requirements,
            },
        )
        assert reply.status_code == 422, (requirements, reply.text)


def _worker_http(baton: Baton, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=baton.stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def _claim(http: httpx.Client) -> dict[str, Any]:
    worker_id = http.post("/api/v1/workers/register", json={"name": "w"}).json()["id"]
    reply = http.post(f"/api/v1/workers/{worker_id}/claim", params={"wait": 5})
    assert reply.status_code == 200, reply.text
    grant: dict[str, Any] = reply.json()
    return grant


def test_grants_carry_code_requirements_and_the_wheel_of_the_kind(
    baton_factory: Callable[..., Baton],
) -> None:
    baton = baton_factory()
    bundle = _targz([_file("main.py", b"print('hi')\n")])
    digest = _upload(baton, bundle).json()["digest"]
    command_id = baton.submit(
        name="with-code",
        kind="command",
        config={"command": "python main.py"},
        code={"bundle": digest},
        requirements=["tinydep==1.0"],
        priority=50,
    )
    ml_id = baton.submit(name="ttt", kind="ml.arc.ttt", config={}, priority=10)
    shown = baton.get(command_id)
    assert shown["code"] == {"bundle": digest} and shown["requirements"] == ["tinydep==1.0"]

    with (
        _worker_http(baton, baton.worker_token) as worker,
        _worker_http(baton, create_worker_token(baton.settings, "other")) as other,
    ):
        # Nobody holds a lease on it yet.
        assert worker.get(f"/api/v1/bundles/{digest}").status_code == 403

        grant = _claim(worker)
        assert grant["experiment_id"] == command_id
        assert grant["code"] == {
            "bundle": digest,
            "size": len(bundle),
            "url": f"{baton.stack.url}/api/v1/bundles/{digest}",
        }
        assert grant["requirements"] == ["tinydep==1.0"] and grant["package_wheel"] is None
        download = worker.get(grant["code"]["url"])
        assert download.status_code == 200 and download.content == bundle
        # Another token's worker holds no lease on it.
        assert other.get(grant["code"]["url"]).status_code == 403

        ml_grant = _claim(worker)
        assert ml_grant["experiment_id"] == ml_id
        assert ml_grant["package_wheel"] == f"{baton.stack.url}{ML.path}"
        assert ml_grant["code"] is None and ml_grant["requirements"] == []

    served = httpx.get(ml_grant["package_wheel"])
    assert served.status_code == 200
    with zipfile.ZipFile(io.BytesIO(served.content)) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(f"baton_ml-{ML.filename.split('-')[1]}.dist-info/METADATA").decode()
    assert "ml/arc/ttt_job.py" in names and "ml/kinds.py" in names
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert "Requires-Dist: transformers>=5.0" in requires
    assert "Requires-Dist: peft>=0.21" in requires
    assert not [line for line in requires if "torch" in line.split(":")[1].split("=")[0]]


def _log(baton: Baton, experiment_id: int, attempt: int) -> str:
    reply = baton.http.get(f"/api/v1/experiments/{experiment_id}/logs", params={"attempt": attempt})
    assert reply.status_code == 200, reply.text
    text: str = reply.json()["text"]
    return text


MAIN = """\
import os, sys
from worker.context import JobContext
import helper
import tinydep

assert not os.path.exists("weights.bin"), ".batonignore left it out"
JobContext.from_env().result(value=tinydep.double(helper.three()), python=sys.executable)
"""


def test_submit_workdir_runs_the_code_with_its_own_module_and_a_shipped_wheel(
    baton_factory: Callable[..., Baton], tmp_path: Path
) -> None:
    baton = baton_factory()
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / "main.py").write_text(MAIN)
    (workdir / "helper.py").write_text("def three():\n    return 3\n")
    (workdir / ".batonignore").write_text("*.bin\n")
    (workdir / "weights.bin").write_bytes(b"\0" * 1000)
    write_wheel(
        workdir / "wheels",
        "tinydep",
        "1.0",
        modules={"tinydep.py": "def double(x):\n    return 2 * x\n"},
    )

    cli = Cli(tmp_path / "cli")
    cli.login(baton.stack.url, *ADMIN)
    submitted = cli(
        "submit",
        "--workdir",
        str(workdir),
        "--command",
        "python main.py",
        "--requirement",
        "./wheels/tinydep-1.0-py3-none-any.whl",
        "--name",
        "shipped",
        "--json",
    )
    assert submitted.code == 0, submitted
    assert "uploaded as sha256:" in submitted.stderr
    experiment = submitted.json()
    assert experiment["code"]["bundle"].startswith("sha256:")

    _start_worker(baton, "worker-a")
    body = baton.wait_status(experiment["id"], "succeeded", "failed", timeout=180)
    assert body["status"] == "succeeded", _log(baton, experiment["id"], 1)
    assert body["result"]["value"] == 6
    # The job's `python` was the environment's, under the worker's own work dir.
    worker_dir = baton.stack.root / "worker-a"
    assert Path(body["result"]["python"]).is_relative_to(worker_dir / "envs")
    assert not worker_dir.is_relative_to(baton.settings.data_dir)
    cached = list((worker_dir / "bundles" / "sha256").glob("*.tar.gz"))
    assert [p.name for p in cached] == [experiment["code"]["bundle"][7:] + ".tar.gz"]


def test_a_requirement_that_cannot_install_fails_the_attempt_with_pips_message(
    baton_factory: Callable[..., Baton],
) -> None:
    baton = baton_factory()
    experiment_id = baton.submit(
        name="bad-requirement",
        kind="command",
        config={"command": "true"},
        requirements=["baton-test-no-such-dist==1.0"],
        max_attempts=2,
    )
    _start_worker(baton, "worker-a")
    body = baton.wait_status(experiment_id, "failed", "succeeded", timeout=180)
    assert body["status"] == "failed"
    assert [a["outcome"] for a in body["attempts"]] == ["failed", "failed"]
    assert body["failure_count"] == 2
    for attempt in body["attempts"]:
        assert "baton-test-no-such-dist" in attempt["reason"]
        assert "No matching distribution" in attempt["reason"]
        assert attempt["exit_code"] is None  # the job never started
    assert "No matching distribution found for baton-test-no-such-dist" in _log(
        baton, experiment_id, 1
    )


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.test",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.test",
    }
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


RUN = """\
from worker.context import JobContext
import version
JobContext.from_env().result(version=version.NAME)
"""


def test_git_code_runs_at_its_ref_and_the_attempt_records_the_commit(
    baton_factory: Callable[..., Baton], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "--quiet", "--initial-branch", "main")
    (repo / "run.py").write_text(RUN)
    (repo / "version.py").write_text("NAME = 'main'\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "--quiet", "-m", "main")
    _git(repo, "checkout", "--quiet", "-b", "feature")
    (repo / "version.py").write_text("NAME = 'feature'\n")
    _git(repo, "commit", "--quiet", "-am", "feature")
    feature = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "--quiet", "main")

    baton = baton_factory()
    experiment_id = baton.submit(
        name="from-git",
        kind="command",
        config={"command": f"{sys.executable} run.py"},
        code={"git": repo.as_uri(), "ref": "feature"},
    )
    _start_worker(baton, "worker-a")
    body = baton.wait_status(experiment_id, "succeeded", "failed", timeout=120)
    assert body["status"] == "succeeded", _log(baton, experiment_id, 1)
    assert body["result"] == {"version": "feature"}
    assert body["code"] == {"git": repo.as_uri(), "ref": "feature"}
    assert [a["code_commit"] for a in body["attempts"]] == [feature]
