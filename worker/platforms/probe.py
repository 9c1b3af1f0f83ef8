"""What platform detection looks at, injectable so each platform is tested from fixtures."""

from __future__ import annotations

import os
import platform as _platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# The AWS SDKs honour this variable too; tests point it (or --imds-url) at a local stand-in.
IMDS_URL_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
IMDS_DISABLED_ENV = "AWS_EC2_METADATA_DISABLED"
DEFAULT_IMDS_URL = "http://169.254.169.254"
# Off EC2 the metadata address is unrouted or refuses: this bounds what "not EC2" costs.
DEFAULT_IMDS_TIMEOUT = 0.2


@dataclass(frozen=True)
class Probe:
    """The environment, a filesystem root (``/`` for real), the OS name and the IMDS URL."""

    env: Mapping[str, str]
    root: Path = Path("/")
    system: str = field(default_factory=_platform.system)
    imds_url: str = DEFAULT_IMDS_URL
    imds_timeout: float = DEFAULT_IMDS_TIMEOUT

    @classmethod
    def here(cls, *, imds_url: str | None = None) -> Probe:
        env = dict(os.environ)
        return cls(env=env, imds_url=imds_url or env.get(IMDS_URL_ENV) or DEFAULT_IMDS_URL)

    def path(self, absolute: str) -> Path:
        """``absolute`` under this probe's root."""
        return self.root / absolute.lstrip("/")

    @property
    def imds_disabled(self) -> bool:
        return self.env.get(IMDS_DISABLED_ENV, "").lower() in ("1", "true", "yes")
