"""`/metrics` parses as Prometheus text, and its values move when jobs run."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.settings import Settings
from tests.e2e.conftest import Baton, baton_factory  # noqa: F401  (fixture reused)
from tests.support.api import create_user, create_worker_token, login
from tests.support.experiments import submit
from tests.support.workers import claim, finish, register

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def test_preemption_counts_apart_from_loss(client: TestClient, settings: Settings) -> None:
    create_user(settings, "u@example.com")
    user = login(client, "u@example.com")
    token = create_worker_token(settings)
    before = parse(client.get("/metrics").text)
    submit(client, user, "preempted-once")
    grant = claim(client, token, register(client, token))
    assert grant is not None
    finish(client, token, "release", grant, reason="preempted")
    after = parse(client.get("/metrics").text)

    assert value(after, "baton_attempts_ended_total", outcome="preempted") == 1
    assert value(after, "baton_attempts_ended_total", outcome="lost") == 0
    assert value(after, "baton_queue_depth") == 1, "a preempted experiment is queued again"
    assert value(after, "baton_experiments", status="queued") == 1
    # The histogram lives in this process, across tests: compare with before.
    count = "baton_job_duration_seconds_count"
    job = {"kind": "command", "outcome": "preempted"}
    assert value(after, count, **job) == value(before, count, **job) + 1
    for source in ("redis", "database"):
        assert value(after, "baton_metrics_source_up", source=source) == 1


@pytest.mark.e2e
def test_metrics_move_when_a_job_runs(baton_factory: Callable[..., Baton]) -> None:  # noqa: F811
    baton = baton_factory()

    def scrape() -> Samples:
        reply = httpx.get(f"{baton.stack.url}/metrics", timeout=30)
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
        return parse(reply.text)

    before = scrape()
    assert value(before, "baton_queue_depth") == 0
    experiment_id = baton.submit(name="measured", kind="command", config={"command": "sleep 0.5"})
    queued = scrape()
    assert value(queued, "baton_queue_depth") == 1
    assert value(queued, "baton_experiments", status="queued") == 1

    baton.start_worker("worker-a")
    assert baton.wait_status(experiment_id, "succeeded", "failed", "lost")["status"] == "succeeded"
    after = scrape()
    assert value(after, "baton_queue_depth") == 0
    assert value(after, "baton_claims_total") == value(before, "baton_claims_total") + 1
    assert value(after, "baton_attempts_ended_total", outcome="succeeded") == 1
    assert value(after, "baton_attempts_running") == 0
    assert value(after, "baton_experiments", status="succeeded") == 1
    job = {"kind": "command", "outcome": "succeeded"}
    assert value(after, "baton_job_duration_seconds_count", **job) == 1
    assert value(after, "baton_job_duration_seconds_sum", **job) >= 0.5
    complete = {"route": "/api/v1/leases/complete", "method": "POST", "status": "200"}
    requests = "baton_api_request_duration_seconds_count"
    assert value(after, requests, **complete) == 1
    polled = {"route": "/api/v1/experiments/{experiment_id}"}
    assert value(after, requests, **polled) > value(before, requests, **polled)
