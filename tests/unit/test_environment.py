"""Job environments with real venvs and real pip; packages come from local wheels, no index.

The "notebook" is a virtualenv the tests create (the case `--system-site-packages` alone
gets wrong): it holds `platformpkg` 1.0 and a stand-in `torch` 9.9.9.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.wheels import write_wheel
from worker.environment import EnvironmentFailed, Environments, JobEnvironment

REPO = Path(__file__).resolve().parents[2]


def _py(python: str, code: str, env: dict[str, str] | None = None) -> str:
    run = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.strip()


def _venv(path: Path, *packages: str, find_links: Path) -> str:
    """A virtualenv holding `packages` (installed by this interpreter's pip)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = str(path / "bin" / "python")
    if packages:
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "--python", python, "install", "-q"),
                *("--no-index", "--find-links", str(find_links), "--disable-pip-version-check"),
                *packages,
            ],
            check=True,
            env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
        )
    return python


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The only place pip may find packages (PIP_FIND_LINKS, PIP_NO_INDEX)."""
    out = tmp_path_factory.mktemp("wheels")
    write_wheel(out, "platformpkg", "1.0")
    write_wheel(out, "platformpkg", "2.0")
    write_wheel(out, "torch", "9.9.9")
    write_wheel(out, "torch", "10.0")
    write_wheel(out, "needs-torch10", "1.0", requires=["torch>=10"])
    write_wheel(out, "jobdep", "1.0")
    return out


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory, wheels: Path) -> str:
    """The notebook's Python: a venv with platformpkg 1.0 and torch 9.9.9."""
    return _venv(
        tmp_path_factory.mktemp("nb") / "venv",
        "platformpkg==1.0",
        "torch==9.9.9",
        find_links=wheels,
    )


@pytest.fixture(autouse=True)
def _no_index(monkeypatch: pytest.MonkeyPatch, wheels: Path) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


@pytest.fixture
def envs(tmp_path: Path, notebook: str) -> Environments:
    return Environments(cache_dir=tmp_path / "envs", base_python=notebook)


def _code_with_wheel(root: Path, version: str = "1.0", body: str = "") -> Path:
    write_wheel(
        root / "wheels",
        "mypkg",
        version,
        modules={"mypkg/__init__.py": f"__version__ = {version!r}\n{body}"},
    )
    return root


def test_no_requirements_use_the_notebook_python(envs: Environments, tmp_path: Path) -> None:
    env = envs.prepare([], code_dir=None, log=tmp_path / "job.log")
    assert env == JobEnvironment(python=envs.base_python, bin_dir=None)
    assert not envs.cache_dir.exists()
    assert env.apply({"PATH": "/usr/bin"}) == {"PATH": "/usr/bin"}


def test_apply_activates_the_venv() -> None:
    env = JobEnvironment(python="/e/bin/python", bin_dir="/e/bin")
    out = env.apply({"PATH": "/usr/bin", "PYTHONHOME": "/x", "HOME": "/h"})
    assert out == {"PATH": f"/e/bin{os.pathsep}/usr/bin", "VIRTUAL_ENV": "/e", "HOME": "/h"}


def test_a_wheel_shipped_with_the_code_installs_beside_the_notebook_packages(
    envs: Environments, notebook: str, tmp_path: Path
) -> None:
    code = _code_with_wheel(tmp_path / "code")
    log = tmp_path / "job.log"
    env = envs.prepare(["wheels/mypkg-1.0-py3-none-any.whl"], code_dir=code, log=log)

    assert env.bin_dir is not None and env.python.startswith(str(envs.cache_dir))
    seen = _py(
        env.python,
        "import mypkg, platformpkg, torch, sys; "
        "print(mypkg.__version__, platformpkg.__version__, torch.__version__, sys.prefix)",
    ).split()
    assert seen[:3] == ["1.0", "1.0", "9.9.9"]
    assert seen[3] == str(Path(env.bin_dir).parent)
    # platformpkg lives only in the notebook venv: the interpreter under it does not see it,
    # so the job env got it through its .pth, not through --system-site-packages.
    under = _py(notebook, "import sys; print(sys._base_executable)")
    assert _py(under, "import importlib.util as u; print(u.find_spec('platformpkg'))") == "None"
    # `python` on the job's PATH is the venv's.
    activated = env.apply(dict(os.environ))
    assert (
        subprocess.run(
            ["python", "-c", "import mypkg"], env=activated, capture_output=True, check=False
        ).returncode
        == 0
    )
    text = log.read_text()
    assert "[baton] installing requirements" in text and "wheels/mypkg-1.0" in text
    assert "Successfully installed mypkg-1.0" in text
    assert "torch==9.9.9" in text  # the pins are stated in the log


def test_the_same_set_is_built_once_and_changed_code_builds_anew(
    envs: Environments, notebook: str, tmp_path: Path
) -> None:
    entry = "wheels/mypkg-1.0-py3-none-any.whl"
    first = envs.prepare(
        [entry], code_dir=_code_with_wheel(tmp_path / "a1"), log=tmp_path / "1.log"
    )

    # The next attempt: code unpacked afresh elsewhere, another Environments (a restarted
    # agent) over the same cache. pip writes into the log whenever it runs; it does not run.
    again = Environments(cache_dir=envs.cache_dir, base_python=notebook)
    log2 = tmp_path / "2.log"
    second = again.prepare(
        [f" {entry}", entry], code_dir=_code_with_wheel(tmp_path / "a2"), log=log2
    )
    assert second == first
    assert log2.read_text().splitlines() == [f"[baton] requirements already installed: {entry}"]

    # Same entry, different wheel content: a different environment.
    changed = _code_with_wheel(tmp_path / "a3", body="CHANGED = True\n")
    third = envs.prepare([entry], code_dir=changed, log=tmp_path / "3.log")
    assert third != first
    assert _py(third.python, "import mypkg; print(mypkg.CHANGED)") == "True"
    assert _py(first.python, "import mypkg; print(hasattr(mypkg, 'CHANGED'))") == "False"


def test_a_requirement_may_upgrade_a_notebook_package_inside_the_venv_only(
    envs: Environments, notebook: str, tmp_path: Path
) -> None:
    env = envs.prepare(["platformpkg==2.0"], code_dir=None, log=tmp_path / "job.log")
    assert _py(env.python, "import platformpkg; print(platformpkg.__version__)") == "2.0"
    assert _py(notebook, "import platformpkg; print(platformpkg.__version__)") == "1.0"


@pytest.mark.parametrize("requirement", ["needs-torch10", "torch==10.0"])
def test_a_requirement_never_replaces_the_notebook_torch(
    envs: Environments, notebook: str, tmp_path: Path, requirement: str
) -> None:
    log = tmp_path / "job.log"
    with pytest.raises(EnvironmentFailed) as failed:
        envs.prepare([requirement], code_dir=None, log=log)
    message = str(failed.value)
    assert message.splitlines()[0] == f"pip install {requirement} failed (exit 1):"
    assert "torch==9.9.9" in message  # pip names the constraint that blocked it
    assert "torch==9.9.9" in log.read_text()
    assert _py(notebook, "import torch; print(torch.__version__)") == "9.9.9"
    assert [p.name for p in envs.cache_dir.iterdir() if p.name not in {"builds", "locks"}] == []
    assert list((envs.cache_dir / "builds").iterdir()) == []


def test_without_a_platform_torch_the_same_requirement_installs(
    tmp_path: Path, wheels: Path
) -> None:
    """Control for the test above: the wheels can satisfy torch>=10; only the pin stops it."""
    bare = _venv(tmp_path / "bare", find_links=wheels)
    envs = Environments(cache_dir=tmp_path / "envs", base_python=bare)
    env = envs.prepare(["needs-torch10"], code_dir=None, log=tmp_path / "job.log")
    assert _py(env.python, "import torch; print(torch.__version__)") == "10.0"


def test_an_uninstallable_requirement_fails_with_pips_message(
    envs: Environments, tmp_path: Path
) -> None:
    log = tmp_path / "job.log"
    with pytest.raises(EnvironmentFailed) as failed:
        envs.prepare(["jobdep", "no-such-package==1"], code_dir=None, log=log)
    pip_says = "No matching distribution found for no-such-package==1"
    assert pip_says in str(failed.value)
    assert pip_says in log.read_text()
    assert list((envs.cache_dir / "builds").iterdir()) == []


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("../outside.whl", "outside the experiment's code"),
        ("/etc/hostname", "outside the experiment's code"),
        ("escape.whl", "outside the experiment's code"),  # a symlink out of the code
        ("wheels/absent-1.0-py3-none-any.whl", "is not in the experiment's code"),
        ("-e .", "options are not allowed"),
        ("--index-url=http://example.test/simple", "options are not allowed"),
        ("  ", "empty requirement"),
        ("jobdep\n--index-url=http://example.test", "must be one line"),
    ],
)
def test_bad_entries_are_refused_before_anything_is_built(
    envs: Environments, tmp_path: Path, entry: str, says: str
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    outside = write_wheel(tmp_path, "outside", "1.0")
    (code / "escape.whl").symlink_to(outside)
    with pytest.raises(EnvironmentFailed, match=says) as failed:
        envs.prepare(["jobdep", entry], code_dir=code, log=tmp_path / "job.log")
    if entry.strip():
        assert repr(entry) in str(failed.value)
    assert not envs.cache_dir.exists()


def test_a_local_path_needs_code(envs: Environments, tmp_path: Path) -> None:
    with pytest.raises(EnvironmentFailed, match="has no code"):
        envs.prepare(["./pkg"], code_dir=None, log=tmp_path / "job.log")


def test_concurrent_prepares_of_one_set_build_it_once(
    envs: Environments, wheels: Path, tmp_path: Path
) -> None:
    url = (wheels / "jobdep-1.0-py3-none-any.whl").as_uri()  # a file:// URL passes through
    results: dict[int, JobEnvironment] = {}

    def prepare(n: int) -> None:
        results[n] = envs.prepare([url], code_dir=None, log=tmp_path / f"{n}.log")

    threads = [threading.Thread(target=prepare, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results[0] == results[1]
    assert len(list((envs.cache_dir / "builds").iterdir())) == 1
    installs = [(tmp_path / f"{n}.log").read_text().count("Successfully installed") for n in (0, 1)]
    assert sorted(installs) == [0, 1]
    assert _py(results[0].python, "import jobdep; print(jobdep.__version__)") == "1.0"


def test_a_build_killed_midway_is_never_reused(
    envs: Environments, notebook: str, tmp_path: Path
) -> None:
    log = tmp_path / "killed.log"
    script = (
        "import sys; from pathlib import Path; from worker.environment import Environments; "
        "Environments(cache_dir=Path(sys.argv[1]), base_python=sys.argv[2])"
        ".prepare(['jobdep'], code_dir=None, log=Path(sys.argv[3]))"
    )
    agent = subprocess.Popen(
        [sys.executable, "-c", script, str(envs.cache_dir), notebook, str(log)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        # The pins line is written just before pip starts: kill the agent and pip mid-install.
        while not (log.exists() and "kept at the platform's versions" in log.read_text()):
            assert agent.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        os.killpg(agent.pid, signal.SIGKILL)
    finally:
        agent.wait()
    leftovers = list((envs.cache_dir / "builds").iterdir())
    assert len(leftovers) == 1
    assert [p for p in envs.cache_dir.iterdir() if p.name not in {"builds", "locks"}] == []

    env = envs.prepare(["jobdep"], code_dir=None, log=tmp_path / "job.log")
    assert _py(env.python, "import jobdep; print(jobdep.__version__)") == "1.0"
    assert [p.name for p in (envs.cache_dir / "builds").iterdir()] == [
        Path(env.bin_dir or "").parent.name
    ]
    assert not leftovers[0].exists()
