"""Run the `baton` command as a real subprocess, with its own config dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def error_lines(self) -> list[str]:
        return self.stderr.strip().splitlines()


@dataclass(frozen=True)
class Cli:
    """`python -m orchestrator ...` with BATON_CONFIG_DIR pointing at ``config_dir``."""

    config_dir: Path

    @property
    def credentials(self) -> Path:
        return self.config_dir / "credentials.json"

    def __call__(
        self,
        *args: str,
        timeout: float = 120,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Result:
        """Runs with ``input`` on stdin (a pipe, never a terminal), else with stdin closed;
        ``env`` adds variables (a server's settings, for its server-side commands)."""
        env = {
            **os.environ,
            **(env or {}),
            "BATON_CONFIG_DIR": str(self.config_dir),
            "COLUMNS": "200",
        }
        env.pop("BATON_URL", None)
        # The repository root first: baton_client is importable before it is installed.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator", *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            **({"input": input} if input is not None else {"stdin": subprocess.DEVNULL}),
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def login(self, url: str, email: str, password: str) -> Result:
        result = self("login", "--url", url, "--email", email, "--password", password)
        assert result.code == 0, result
        return result
