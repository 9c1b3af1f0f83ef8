"""The CI/CD files parse and hold what CONTRIBUTING.md tells people to require."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
STATIC_CHECKS = {
    "ruff": "ruff check",
    "format": "ruff format --check",
    "mypy": "mypy",
    "bandit": "bandit -r orchestrator worker baton_client ml -ll",
}


def _load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key ``on`` as the boolean True.
    if True in document:
        document["on"] = document.pop(True)
    return document


def _runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def _uses(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        step["uses"].split("@")[0]: step.get("with", {}) for step in job["steps"] if "uses" in step
    }


def test_ci_runs_on_push_and_pull_request_with_each_check_as_a_job() -> None:
    ci = _load(WORKFLOWS / "ci.yml")
    assert set(ci["on"]) >= {"push", "pull_request"}
    jobs = ci["jobs"]
    for job_id, command in STATIC_CHECKS.items():
        assert jobs[job_id]["name"] == job_id
        assert any(run.startswith(command) for run in _runs(jobs[job_id])), (job_id, command)
        assert "actions/checkout" in _uses(jobs[job_id])


def test_ci_tests_run_on_both_pythons_against_redis_and_postgres() -> None:
    tests = _load(WORKFLOWS / "ci.yml")["jobs"]["tests"]
    assert tests["strategy"]["matrix"]["python"] == ["3.11", "3.12"]
    assert _uses(tests)["actions/setup-python"]["python-version"] == "${{ matrix.python }}"
    services = tests["services"]
    assert (
        services["redis"]["image"].startswith("redis:")
        and "6379:6379" in services["redis"]["ports"]
    )
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:") and "5432:5432" in postgres["ports"]
    # The suite's fixtures connect as postgres@127.0.0.1 without a password.
    assert postgres["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert _runs(tests) == ["./.ci/run"], "CI runs exactly the README's test command"


def test_release_builds_the_wheel_and_pushes_the_image_on_tags() -> None:
    release = _load(WORKFLOWS / "release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    jobs = release["jobs"]
    assert any("pip wheel" in run for run in _runs(jobs["wheel"]))
    image = jobs["image"]
    assert image["permissions"]["packages"] == "write"
    login = _uses(image)["docker/login-action"]
    assert login["registry"] == "ghcr.io"
    build = _uses(image)["docker/build-push-action"]
    assert build["file"] == "deploy/Dockerfile" and build["push"] is True
    assert (ROOT / build["file"]).is_file()
    assert _uses(image)["docker/metadata-action"]["images"].startswith("ghcr.io/")


def test_dependabot_watches_pip_and_actions() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert config["version"] == 2
    assert {u["package-ecosystem"] for u in config["updates"]} >= {"pip", "github-actions"}


def test_contributing_names_the_branch_protection_and_every_required_check() -> None:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    ci = _load(WORKFLOWS / "ci.yml")["jobs"]
    names = [ci[job]["name"] for job in STATIC_CHECKS]
    names += [
        ci["tests"]["name"].replace("${{ matrix.python }}", python)
        for python in ci["tests"]["strategy"]["matrix"]["python"]
    ]
    for name in names:
        assert f"`{name}`" in text, f"CONTRIBUTING.md does not list the required check {name!r}"
    for rule in ("approving review", "force push", "deletions", "status checks"):
        assert rule in text, rule


def test_the_test_command_runs_each_static_check_before_pytest() -> None:
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("./scripts/test.sh")
    pytest_at = script.index("-m pytest")
    for command in ("ruff check .", "ruff format --check .", "mypy", "bandit -q -r"):
        found = re.search(rf"lint \"[^\"]+\" \.venv/bin/{re.escape(command)}", script)
        assert found is not None and found.start() < pytest_at, command
