"""Model weights: a local folder, a pinned hub id, offline mode, HF_TOKEN only as a declared
secret, and one clear line (no traceback) when a model cannot be had.

The hub is a loopback HTTP server answering as the real one does for a gated, missing or
unpinned repository (status and ``X-Error-Code``), so the real huggingface_hub and
transformers code paths run and nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from arc_fixtures import tiny_job_config

from ml.arc.configs import ModelSettings
from ml.arc.modeling import load_model
from ml.arc.weights import ModelUnavailableError
from worker.jobenv import model_cache_env
from worker.runner import JobFiles, contract_env

REPO_ROOT = Path(__file__).resolve().parents[3]
AGENT_TOKEN = "hf_agent-own-token-never-for-jobs"
DECLARED_TOKEN = "hf_declared-secret-of-the-owner"
# (status, X-Error-Code) the hub answers for each repository.
HUB_ANSWERS = {
    "org/gated": (403, "GatedRepo"),
    "org/missing": (404, "RepoNotFound"),
    "org/pinned": (404, "RevisionNotFound"),
}


class FakeHub(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.authorizations: list[str | None] = []
        """The Authorization header of each request about a repository."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class HubHandler(BaseHTTPRequestHandler):
    server: FakeHub

    def _answer(self) -> None:
        if "/org/" in self.path:  # a repository's (huggingface_hub asks other things too)
            self.server.authorizations.append(self.headers.get("Authorization"))
        status, code = next(
            (answer for repo, answer in HUB_ANSWERS.items() if f"/{repo}/" in self.path),
            (404, "RepoNotFound"),
        )
        body = json.dumps({"error": code}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _answer

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    server = FakeHub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_job(
    tmp_path: Path,
    tiny_tasks_dir: Path,
    hub: FakeHub,
    monkeypatch: pytest.MonkeyPatch,
    *,
    model: str,
    secrets: dict[str, str],
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run ``ml.arc.ttt_job`` in the environment an agent gives it: the agent itself has an
    HF_TOKEN; the grant's named secrets are ``secrets``; the job's config.env names the hub."""
    files = JobFiles(tmp_path / "attempt")
    files.root.mkdir(parents=True)
    config = tiny_job_config(tiny_tasks_dir, tmp_path / "unused", tmp_path / "cache")
    config["model"]["name_or_path"] = model
    files.config.write_text(json.dumps(config))
    monkeypatch.setattr(
        "os.environ", {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HF_TOKEN": AGENT_TOKEN}
    )
    job_vars = {"HF_ENDPOINT": hub.url, "PYTHONPATH": str(REPO_ROOT), **secrets}
    env = contract_env(
        files,
        experiment_id=1,
        attempt=1,
        resume_step=None,
        deadline=None,
        extra={**model_cache_env(tmp_path / "worker" / "models", os.environ), **job_vars},
    )
    done = subprocess.run(
        [sys.executable, "-m", "ml.arc.ttt_job"],
        env=env,
        cwd=files.root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done, env


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("secrets", "sent", "says"),
    [
        ({"HF_TOKEN": DECLARED_TOKEN}, f"Bearer {DECLARED_TOKEN}", "HF_TOKEN is set in this job"),
        ({}, None, "HF_TOKEN is not set in this job"),
    ],
    ids=["named-secret", "not-named"],
)
def test_a_gated_model_is_one_clear_line_and_only_a_named_token_reaches_the_hub(
    tmp_path: Path,
    tiny_tasks_dir: Path,
    hub: FakeHub,
    monkeypatch: pytest.MonkeyPatch,
    secrets: dict[str, str],
    sent: str | None,
    says: str,
) -> None:
    done, env = run_job(
        tmp_path, tiny_tasks_dir, hub, monkeypatch, model="org/gated", secrets=secrets
    )
    assert done.returncode == 2, done.stderr
    [line] = error_lines(done.stderr)
    assert line.startswith("error: model 'org/gated' is gated: accept its licence")
    assert line.endswith(says)
    assert hub.authorizations, "the job asked the (loopback) hub"
    assert set(hub.authorizations) == {sent}
    assert AGENT_TOKEN not in done.stderr + done.stdout + json.dumps(hub.authorizations)
    # The per-worker cache the agent hands every job (it outlives the attempt's folder).
    assert env["HF_HOME"] == str(tmp_path / "worker" / "models")


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("org/missing", "error: model 'org/missing' was not found on the hub"),
        ("/kaggle/input/no-such-model", "is not a folder on this worker"),
    ],
)
def test_a_missing_model_is_one_clear_line(
    tmp_path: Path,
    tiny_tasks_dir: Path,
    hub: FakeHub,
    monkeypatch: pytest.MonkeyPatch,
    model: str,
    message: str,
) -> None:
    done, _ = run_job(tmp_path, tiny_tasks_dir, hub, monkeypatch, model=model, secrets={})
    assert done.returncode == 2, done.stderr
    [line] = error_lines(done.stderr)
    assert message in line


def test_an_unknown_revision_names_the_revision(monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process: the hub endpoint is read when huggingface_hub is imported, so this one
    # checks the wording on the error chain transformers raises for a missing revision.
    from huggingface_hub.errors import RevisionNotFoundError

    from ml.arc.weights import explain

    class Response:
        status_code, headers, url, request = 404, {}, "http://127.0.0.1/", None

    cause = RevisionNotFoundError("no such revision", response=Response())  # type: ignore[arg-type]
    try:
        raise OSError("org/pinned does not appear to have a file named config.json") from cause
    except OSError as exc:
        line = explain(exc, "org/pinned", ModelSettings(revision="0123abc"))
    assert line == "model 'org/pinned' has no revision '0123abc' on the hub"


def test_offline_reads_only_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # Were anything to ask the hub anyway, it would ask a closed loopback port.
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    settings = ModelSettings(name_or_path="org/never-downloaded", offline=True, revision="a1b2c3d")
    with pytest.raises(ModelUnavailableError) as caught:
        load_model(settings, "cpu")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("model 'org/never-downloaded' at revision a1b2c3d is not in this")
    assert "(offline)" in message


def test_a_local_folder_loads_and_ignores_a_revision(tiny_model_dir: Path) -> None:
    settings = ModelSettings(name_or_path=str(tiny_model_dir), revision="a1b2c3d", offline=True)
    model, tokenizer = load_model(settings, "cpu")
    assert model.config.hidden_size == 64 and tokenizer.pad_token == "<pad>"


def test_the_job_cache_is_the_platforms_own_when_it_has_one(tmp_path: Path) -> None:
    assert model_cache_env(tmp_path, {}) == {"HF_HOME": str(tmp_path)}
    assert model_cache_env(tmp_path, {"HF_HOME": "/kaggle/hf"}) == {}
