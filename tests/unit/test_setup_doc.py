"""docs/setup.md lists every setting there is, so the guide cannot fall behind the code."""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# Where the agent and the user CLI read their BATON_* variables.
READERS = [
    *(ROOT / "worker").glob("*.py"),
    *(ROOT / "worker" / "platforms").glob("*.py"),
    *(ROOT / "baton_client").glob("*.py"),
]
# The job contract's variables are set by the agent for its jobs, not by anyone setting up.
ENV_READ = re.compile(r"""(?:env\.get\(|envvar=|_ENV = )["'](BATON_[A-Z_]+)["']""")


def _setting_rows() -> str:
    text = (ROOT / "docs" / "setup.md").read_text()
    return text.split("## Every setting", 1)[1]


def test_every_control_plane_setting_is_in_the_table() -> None:
    table = _setting_rows()
    aliases = [field.alias for field in Settings.model_fields.values() if field.alias]
    assert len(aliases) > 30  # the settings were found
    missing = [alias for alias in aliases if f"| `{alias}` |" not in table]
    assert missing == [], f"add these settings to docs/setup.md: {missing}"


def test_every_variable_the_agent_and_cli_read_is_in_the_table() -> None:
    table = _setting_rows()
    names = {name for path in READERS for name in ENV_READ.findall(path.read_text())}
    assert {"BATON_API", "BATON_WORKER_TOKEN", "BATON_ENROLL_CODE", "BATON_URL"} <= names
    missing = sorted(name for name in names if f"| `{name}` |" not in table)
    assert missing == [], f"add these variables to docs/setup.md: {missing}"
