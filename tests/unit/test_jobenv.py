"""A job's environment is an allowlist (worker/jobenv.py), built by the agent's contract_env,
and `baton up` starts its agents without the control plane's settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.local import agent_environment
from worker.runner import JobFiles, contract_env

REPO = Path(__file__).resolve().parents[2]
AGENT_ENV = {
    # the platform's ordinary variables: kept
    "PATH": "/usr/bin",
    "HOME": "/home/u",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "CUDA_VISIBLE_DEVICES": "0",
    "NVIDIA_VISIBLE_DEVICES": "all",
    "KAGGLE_KERNEL_RUN_TYPE": "Batch",
    "COLAB_GPU": "1",
    "XDG_CACHE_HOME": "/home/u/.cache",
    "PYTHONPATH": "/env/python",
    # credentials of the agent, the control plane, clouds and APIs: dropped
    "BATON_WORKER_TOKEN": "bwt_agent-secret",
    "BATON_ENROLL_CODE": "bec_code",
    "BATON_SECRET_KEY": "signing-key",
    "DATABASE_URL": "postgresql://baton:pw@db/baton",
    "REDIS_URL": "redis://:pw@redis:6379/0",
    "BATON_SMTP_PASSWORD": "smtp-pw",
    "WANDB_API_KEY": "wandb-key",
    "HF_TOKEN": "hf-token",
    "KAGGLE_KEY": "kaggle-key",
    "COLAB_AUTH_TOKEN": "colab-token",
    "AWS_ACCESS_KEY_ID": "AKIA",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "GOOGLE_APPLICATION_CREDENTIALS": "/keys/sa.json",
    "SOMETHING_ELSE": "unknown variables are not inherited either",
}
KEPT = {
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "KAGGLE_KERNEL_RUN_TYPE",
    "COLAB_GPU",
    "XDG_CACHE_HOME",
    "PYTHONPATH",
}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return contract_env(
        JobFiles(tmp_path), experiment_id=7, attempt=1, resume_step=None, deadline=None, extra=extra
    )


def test_a_job_inherits_only_the_platforms_ordinary_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.environ", dict(AGENT_ENV))
    env = _env(tmp_path)
    inherited = {name for name in AGENT_ENV if name in env}
    assert inherited == KEPT
    assert not any(value in env.values() for name, value in AGENT_ENV.items() if name not in KEPT)
    assert env["BATON_EXPERIMENT_ID"] == "7" and env["PYTHONUNBUFFERED"] == "1"


def test_named_secrets_and_config_env_reach_it_but_never_override_the_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.environ", dict(AGENT_ENV))
    env = _env(tmp_path, HF_TOKEN="named-secret", MY_SETTING="x", BATON_EXPERIMENT_ID="99")
    assert env["HF_TOKEN"] == "named-secret" and env["MY_SETTING"] == "x"
    assert env["BATON_EXPERIMENT_ID"] == "7"
    assert "WANDB_API_KEY" not in env, "not named: not there"


def test_baton_up_agents_get_none_of_the_control_planes_settings() -> None:
    env = agent_environment(
        {
            **AGENT_ENV,
            "BATON_DATA_DIR": "/srv/baton",
            "BATON_KAGGLE_KEY": "k",
            "BATON_PUBLIC_URL": "https://b",
        }
    )
    for name in (
        "BATON_SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "BATON_SMTP_PASSWORD",
        "BATON_KAGGLE_KEY",
        "BATON_DATA_DIR",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ):
        assert name not in env, name
    assert env["PATH"] == "/usr/bin" and env["AWS_EC2_METADATA_DISABLED"] == "true"


# The agent (hiding itself or not) starts a child that tries to read the agent's environment.
AGENT = r'''
import os, subprocess, sys
from worker.jobenv import hide_agent_from_jobs
if sys.argv[1] == "hide":
    assert hide_agent_from_jobs()
probe = f"""
try:
    open('/proc/{os.getpid()}/environ', 'rb').read()
    print('read')
except PermissionError:
    print('refused')
"""
child = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
print(child.stdout.strip())
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
@pytest.mark.parametrize(("mode", "seen"), [("hide", "refused"), ("show", "read")])
def test_a_job_cannot_read_a_hidden_agents_environment(mode: str, seen: str) -> None:
    # Root reads every process's /proc files: run the pair as an ordinary user, as notebooks'
    # non-root users are (root needs no credential of the agent's to do harm anyway).
    as_root = os.geteuid() == 0
    python = "/usr/bin/python3" if as_root else sys.executable
    if not Path(python).exists():
        pytest.skip("no system python3 for an unprivileged user")
    done = subprocess.run(
        [python, "-c", AGENT, mode],
        user=65534 if as_root else None,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "AGENT_KEY": "k"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == seen
