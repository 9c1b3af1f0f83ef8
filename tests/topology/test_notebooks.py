"""Baton across hosts: a control plane from its wheel, notebooks that own nothing of Baton.

Each notebook is its own network namespace, run as its own Unix user who cannot read the
repository or the control plane's data; its Python is a fresh venv over a platform's
packages. It gets the worker from the control plane's URL, the job's code as a bundle, the
job's requirements and the ``ml`` wheel through the worker, and checkpoints through the
control plane, which is the only address it can reach.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.cp_host import ControlPlane, experiment, quiet
from tests.support.hosts import Topology
from tests.support.notebooks import KAGGLE_PLATFORM, Notebook
from tests.support.stack import wait_until
from tests.support.wheels import write_wheel
from tests.topology.conftest import MARKS, REPO, NotebookFactory

pytestmark = MARKS

STEPS = 30
STEP_SECONDS = 0.4
REQ_DIST = "baton-topo-req"

STEPS_PY = '''\
"""The job's own module, imported from the folder it was shipped in."""
import hashlib

import topo_req


def fold(digest: str, step: int) -> str:
    return hashlib.sha256(f"{digest}:{step}:{topo_req.SALT}".encode()).hexdigest()
'''

TRAIN_PY = '''\
"""A resumable job: checkpoints every step; its result is a digest of all the steps."""
import json
import sys
import tempfile
import time
from pathlib import Path

import steps
import topo_req
from worker.context import JobContext

ctx = JobContext.from_env()
total, pause = int(sys.argv[1]), float(sys.argv[2])
step, digest, starts = 0, "", []
resume = ctx.resume()
if resume is not None:
    state = json.loads((resume / "state.json").read_text())
    step, digest, starts = state["step"], state["digest"], state["starts"]
starts.append(step)
scratch = Path(tempfile.mkdtemp())
while step < total:
    time.sleep(pause)
    digest = steps.fold(digest, step)
    step += 1
    ctx.progress(step, total)
    state = {"step": step, "digest": digest, "starts": starts}
    (scratch / "state.json").write_text(json.dumps(state))
    ctx.checkpoint(scratch, step)
    if ctx.should_stop():
        sys.exit(0)
ctx.result(
    digest=digest,
    starts=starts,
    salt=topo_req.SALT,
    code=str(Path(steps.__file__).resolve().parent),
    requirement=str(Path(topo_req.__file__).resolve()),
)
'''


def expected_digest(salt: str) -> str:
    digest = ""
    for step in range(STEPS):
        digest = hashlib.sha256(f"{digest}:{step}:{salt}".encode()).hexdigest()
    return digest


def worker_pip_url(http: httpx.Client) -> str:
    """What a bootstrap cell pip-installs: the worker wheel at the control plane's URL."""
    reply = http.get("/api/v1/bootstrap/kaggle")
    assert reply.status_code == 200, reply.text
    url: str = reply.json()["pip"]
    return url


def ready_notebook(make: NotebookFactory, role: str, wheel_url: str, **kw: Any) -> Notebook:
    notebook: Notebook = make(role, **kw)
    installed = notebook.install_worker(wheel_url)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return notebook


def baton_cli(cp: ControlPlane, config_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The user's ``baton`` on the laptop (root namespace), from the installed wheel."""
    env = {
        "PATH": f"{cp.venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(config_dir),
        "BATON_CONFIG_DIR": str(config_dir),
        "BATON_PASSWORD": "password123",
    }
    return subprocess.run(
        [cp.baton, *args], env=env, cwd=config_dir, capture_output=True, text=True, timeout=120
    )


@dataclass
class Watch:
    """One experiment seen from the laptop, and all that tells why it went wrong."""

    cp: ControlPlane
    http: httpx.Client
    experiment_id: int
    agent_logs: tuple[Path, ...]

    def body(self) -> dict[str, Any]:
        return experiment(self.http, self.experiment_id)

    def diagnose(self) -> str:
        body = self.body()
        text = f"experiment: {json.dumps(body, indent=1)}\n{self.cp.logs_text()}"
        for attempt in body["attempts"]:
            job = self.http.get(
                f"/api/v1/experiments/{self.experiment_id}/logs",
                params={"attempt": attempt["number"]},
            )
            output = job.json()["text"] if job.status_code == 200 else job.text
            text += f"\n--- job log, attempt {attempt['number']}\n{output[-4000:]}"
        for path in self.agent_logs:
            if path.exists():
                text += f"\n--- {path.name}\n{quiet(path.read_text(errors='replace'))[-6000:]}"
        return text

    def wait(
        self, what: str, predicate: Any, timeout: float, agent: subprocess.Popen[bytes]
    ) -> Any:
        """Poll ``predicate``; fail at once, with everything, if ``agent`` exits meanwhile."""

        def check() -> Any:
            assert agent.poll() is None, f"the agent exited ({agent.returncode})"
            return predicate()

        try:
            return wait_until(check, timeout=timeout, interval=0.5, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnose()}") from None

    def finished(self, timeout: float, agent: subprocess.Popen[bytes]) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            body = self.body()
            return body if body["status"] in ("succeeded", "failed", "cancelled") else None

        body: dict[str, Any] = self.wait("the experiment to end", ended, timeout, agent)
        assert body["status"] == "succeeded", self.diagnose()
        return body


def test_command_with_shipped_code_resumes_on_another_notebook(
    topo: Topology,
    control_plane: ControlPlane,
    notebook_factory: NotebookFactory,
    tmp_path: Path,
) -> None:
    cp = control_plane
    http = cp.client()
    salt = os.urandom(8).hex()
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / "train.py").write_text(TRAIN_PY)
    (workdir / "steps.py").write_text(STEPS_PY)
    wheel = write_wheel(
        workdir / "wheels", REQ_DIST, "1.0", modules={"topo_req.py": f"SALT = {salt!r}\n"}
    )
    spec = tmp_path / "job.json"
    spec.write_text(
        json.dumps(
            {
                "name": "shipped",
                "kind": "command",
                "config": {"command": f"python train.py {STEPS} {STEP_SECONDS}"},
                "requirements": [f"./wheels/{wheel.name}"],
            }
        )
    )

    wheel_url = worker_pip_url(http)
    assert wheel_url.startswith(cp.url), wheel_url
    notebook_a = ready_notebook(notebook_factory, "a", wheel_url)
    notebook_b = ready_notebook(notebook_factory, "b", wheel_url)
    config_dir = tmp_path / "laptop"
    config_dir.mkdir()
    login = baton_cli(cp, config_dir, "login", "--url", cp.url, "--email", "admin@example.com")
    assert login.returncode == 0, login.stderr
    submitted = baton_cli(cp, config_dir, "submit", str(spec), "--workdir", str(workdir), "--json")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    experiment_id = int(json.loads(submitted.stdout)["id"])

    token = cp.worker_token("notebooks")
    log_a, log_b = tmp_path / "logs" / "agent-a.log", tmp_path / "logs" / "agent-b.log"
    agent_a = notebook_a.start_agent(api=cp.url, token=token, name="notebook-a", log=log_a)
    watch = Watch(cp, http, experiment_id, (log_a, log_b))

    def uploaded() -> bool:
        body = experiment(http, experiment_id)
        assert body["status"] in ("queued", "running"), "it ended before notebook A was killed"
        attempts = body["attempts"]
        return bool(attempts) and (attempts[0]["last_checkpoint_step"] or 0) >= 5

    watch.wait("notebook A to upload a checkpoint", uploaded, 180, agent_a)
    notebook_a.kill()
    assert notebook_a.host.pids() == [], "notebook A still has processes"
    agent_b = notebook_b.start_agent(api=cp.url, token=token, name="notebook-b", log=log_b)

    body = watch.finished(180, agent_b)
    first, second = body["attempts"]
    assert (first["outcome"], second["outcome"]) == ("lost", "succeeded"), body["attempts"]
    assert first["worker_id"] != second["worker_id"]
    resumed = second["resumed_from_step"]
    assert resumed is not None and resumed > 0, "notebook B must resume, not start over"
    assert resumed == first["last_checkpoint_step"]
    assert body["attempt_count"] == 2
    assert sum(a["outcome"] == "succeeded" for a in body["attempts"]) == 1

    result = body["result"]
    assert result["digest"] == expected_digest(salt), "the resumed run must equal a straight one"
    assert result["starts"] == [0, resumed]
    assert result["salt"] == salt  # the requirement came from the wheel shipped with the code
    home_b = str(notebook_b.host.user.home)
    assert result["code"].startswith(home_b), result  # the bundle, unpacked on notebook B
    assert result["requirement"].startswith(home_b), result
    assert not result["requirement"].startswith(str(notebook_b.venv)), (
        "requirements go to a venv of the worker's, not into the notebook's own Python"
    )
    # The checkpoint B resumed from crossed hosts through the control plane's store.
    assert list(cp.data_dir.rglob("MANIFEST.json")), "no checkpoint in the control plane's store"


def _arc_fixtures() -> Any:
    path = REPO / "tests" / "ml" / "arc" / "arc_fixtures.py"
    spec = importlib.util.spec_from_file_location("arc_fixtures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arc_ttt_runs_on_a_notebook_without_the_ml_package(
    topo: Topology,
    control_plane: ControlPlane,
    notebook_factory: NotebookFactory,
    tmp_path: Path,
) -> None:
    cp = control_plane
    http = cp.client()
    fixtures = _arc_fixtures()
    # The notebook's inputs, readable by it as a platform's dataset mount is.
    inputs = topo.run_dir / "input"
    inputs.mkdir(mode=0o755)
    tasks_dir = fixtures.write_task_folder(inputs / "tasks", fixtures.tiny_tasks())
    model_dir = fixtures.build_tiny_model(inputs / "tiny-llama")
    for path in [inputs, *inputs.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    config = fixtures.tiny_job_config(tasks_dir, model_dir, tmp_path / "unused")
    config["data"].pop("cache_dir")  # the default, in the notebook user's home

    notebook = notebook_factory("kaggle", platform=KAGGLE_PLATFORM)
    before = notebook.run([notebook.python, "-c", "import torch, transformers; import ml"])
    assert "No module named 'ml'" in before.stderr, before.stderr
    installed = notebook.install_worker(worker_pip_url(http))
    assert installed.returncode == 0, installed.stderr

    reply = http.post(
        "/api/v1/experiments", json={"name": "arc", "kind": "ml.arc.ttt", "config": config}
    )
    assert reply.status_code == 201, reply.text
    experiment_id = int(reply.json()["id"])
    log = tmp_path / "logs" / "agent-kaggle.log"
    agent = notebook.start_agent(
        api=cp.url, token=cp.worker_token("kaggle"), name="kaggle", log=log
    )

    body = Watch(cp, http, experiment_id, (log,)).finished(420, agent)
    assert body["attempt_count"] == 1
    assert body["result"]["tasks"] == 3 and body["result"]["total_outputs"] == 4
    # The worker installed the control plane's ml wheel for the job, beside (not into) the
    # notebook's own Python, which still has no `ml`.
    home = notebook.host.user.home
    ml_dists = [p for p in home.rglob("baton_ml-*.dist-info") if notebook.venv not in p.parents]
    assert ml_dists, f"no baton_ml install under {home}"
    after = notebook.run([notebook.python, "-c", "import ml"])
    assert after.returncode != 0
