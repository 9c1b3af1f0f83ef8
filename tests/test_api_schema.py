"""Schemathesis over the server's own ``/openapi.json``, against a real `baton serve`.

As a user, as a worker and as an admin (bearer tokens from a real login and a real worker
token), every operation gets schema-valid and schema-violating requests, a bounded number of
each (deterministic: derandomized). No reply may be a 5xx, carry a status code the operation
does not declare, or have a body that does not match the schema declared for its status.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.api import create_user, make_settings
from tests.support.stack import Stack, stack_env

pytestmark = pytest.mark.e2e

EXAMPLES = 25  # per operation, identity and mode: about a minute per identity here
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
USER = ("user@example.com", "password123")
ADMIN = ("admin@example.com", "password123")


@dataclass
class Api:
    url: str
    headers: dict[str, dict[str, str]]  # identity -> Authorization header
    statuses: Counter[tuple[str, str, int]] = field(default_factory=Counter)


def _login(http: httpx.Client, who: tuple[str, str]) -> dict[str, str]:
    reply = http.post("/auth/login", data={"username": who[0], "password": who[1]})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


@pytest.fixture
def api(redis_url: str, tmp_path: Path) -> Iterator[Api]:
    """A real server with something in it: two experiments, one of them leased to a worker."""
    db = f"sqlite:///{tmp_path / 'baton.db'}"
    env = stack_env(
        database_url=db,
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        BATON_CLAIM_WAIT_SECONDS="0.5",  # generated claims long-poll; keep each one short
    )
    stack = Stack(env=env, root=tmp_path)
    settings = make_settings(database_url=db, redis_url=redis_url, data_dir=tmp_path / "data")
    create_user(settings, *USER)
    create_user(settings, *ADMIN, admin=True)
    stack.start_api()
    try:
        with httpx.Client(base_url=stack.url, timeout=30) as http:
            user, admin = _login(http, USER), _login(http, ADMIN)
            # The user's own token: a worker takes only its owner's work.
            made = http.post("/api/v1/worker-tokens", json={"name": "fuzz"}, headers=user)
            assert made.status_code == 201, made.text
            worker = {"Authorization": f"Bearer {made.json()['token']}"}
            for name in ("first", "second"):
                spec = {"name": name, "kind": "command", "config": {"command": "true"}}
                assert http.post("/api/v1/experiments", json=spec, headers=user).is_success
            registered = http.post(
                "/api/v1/workers/register", json={"name": "w"}, headers=worker
            ).json()
            claimed = http.post(
                f"/api/v1/workers/{registered['id']}/claim", params={"wait": 0}, headers=worker
            )
            assert claimed.status_code == 200, claimed.text
        yield Api(stack.url, {"user": user, "worker": worker, "admin": admin})
    finally:
        stack.close()


def _fuzz(api: Api, who: str, operation: Any, mode: GenerationMode) -> str | None:
    """Run one operation's examples; the failure report, or None."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        wait = (case.query or {}).get("wait")
        if isinstance(wait, int | float) and not isinstance(wait, bool):
            case.query["wait"] = 0  # a long poll would only spend the time budget
        response = case.call(base_url=api.url, headers=api.headers[who], timeout=30)
        api.statuses[(who, operation.label, response.status_code)] += 1
        case.validate_response(response, checks=CHECKS, headers=api.headers[who])

    try:
        run()
    except Unsatisfiable:
        return None  # nothing to vary (e.g. no parameters to break in negative mode)
    except (AssertionError, BaseExceptionGroup, requests.RequestException) as exc:
        # A failed check (schemathesis groups them), or no reply at all.
        return f"--- {who} {mode.value} {operation.label}\n{exc}"
    return None


@pytest.mark.parametrize("who", ["worker", "user", "admin"])
def test_every_reply_matches_the_declared_schema(api: Api, who: str) -> None:
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    failures = [
        report
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for operation in operations
        if (report := _fuzz(api, who, operation, mode)) is not None
    ]
    assert not failures, "\n".join(failures)

    # The run exercised the API as that identity: its own reads answered 2xx, not just 401s.
    answered = {label for (w, label, status) in api.statuses if w == who and status < 300}
    own_read = {
        "user": "GET /api/v1/experiments",
        "admin": "GET /api/v1/worker-tokens",
        "worker": "POST /api/v1/workers/register",
    }[who]
    assert own_read in answered, sorted(answered)
    assert sum(api.statuses.values()) > len(operations) * 10
