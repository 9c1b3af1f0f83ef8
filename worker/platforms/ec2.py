"""EC2 via the instance metadata service (IMDSv2): detection and the spot interruption notice."""

from __future__ import annotations

import json
import logging
import ssl
from dataclasses import dataclass

import httpx

from worker.platforms.probe import Probe

log = logging.getLogger(__name__)

TOKEN_PATH = "/latest/api/token"
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
LIFECYCLE_PATH = "/latest/meta-data/instance-life-cycle"
INSTANCE_TYPE_PATH = "/latest/meta-data/instance-type"
SPOT_ACTION_PATH = "/latest/meta-data/spot/instance-action"
TOKEN_TTL_SECONDS = 6 * 3600


class Imds:
    """A small IMDSv2 client: a session token first, then GETs that present it."""

    def __init__(self, base_url: str, *, timeout: float) -> None:
        # trust_env=False: a proxy from the environment must never see metadata requests.
        # IMDS is plain HTTP, and loading a CA bundle alone costs 0.1-0.3 s: a TLS context that
        # trusts no one costs nothing, and an https:// metadata URL fails closed with it.
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            trust_env=False,
            verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
        )
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    def token(self) -> str | None:
        """A session token, or None when no metadata service answers (not EC2)."""
        if self._token is None:
            try:
                reply = self._http.put(
                    TOKEN_PATH, headers={TOKEN_TTL_HEADER: str(TOKEN_TTL_SECONDS)}
                )
            except httpx.HTTPError:
                return None
            if reply.status_code == 200 and reply.text:
                self._token = reply.text
        return self._token

    def get(self, path: str) -> str | None:
        """The value at ``path``; None when it is absent (404) or nothing answers."""
        for _ in range(2):  # an expired token (401) gets one refresh
            token = self.token()
            if token is None:
                return None
            try:
                reply = self._http.get(path, headers={TOKEN_HEADER: token})
            except httpx.HTTPError:
                return None
            if reply.status_code == 401:
                self._token = None
                continue
            return reply.text if reply.status_code == 200 else None
        return None


def detect_ec2(probe: Probe) -> dict[str, str] | None:
    """Details of this EC2 instance (type, lifecycle), or None off EC2."""
    if probe.imds_disabled:
        return None
    imds = Imds(probe.imds_url, timeout=probe.imds_timeout)
    try:
        if imds.token() is None:
            return None
        details = {
            "instance_type": imds.get(INSTANCE_TYPE_PATH),
            "lifecycle": imds.get(LIFECYCLE_PATH),
        }
    finally:
        imds.close()
    return {k: v for k, v in details.items() if v}


@dataclass(frozen=True)
class SpotAction:
    action: str  # terminate, stop or hibernate
    time: str  # when, ISO 8601 UTC


class SpotNotice:
    """Polls the spot interruption notice, which appears about two minutes ahead."""

    def __init__(self, imds_url: str, *, timeout: float = 1.0) -> None:
        self._imds = Imds(imds_url, timeout=timeout)

    def check(self) -> SpotAction | None:
        body = self._imds.get(SPOT_ACTION_PATH)
        if body is None:
            return None
        try:
            data = json.loads(body)
            return SpotAction(action=str(data["action"]), time=str(data["time"]))
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable spot instance-action %r: treating it as a notice", body[:200])
            return SpotAction(action="unknown", time="")

    def close(self) -> None:
        self._imds.close()
