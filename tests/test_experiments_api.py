"""The experiments API on SQLite and Postgres with real Redis: bad input, listing, cancel, retry.

"Nothing stored, nothing queued" is checked against the database rows and the Redis keys
themselves, not only the API's own listing.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from orchestrator.settings import Settings
from tests.support.api import create_user, create_worker_token, login
from tests.support.experiments import ready_keys, ready_members, stored_rows, submit
from tests.support.workers import claim, finish, register

URL = "/api/v1/experiments"
VALID: dict[str, Any] = {"name": "ok", "kind": "command", "config": {"command": "true"}}


@pytest.fixture
def user(client: TestClient, settings: Settings) -> dict[str, str]:
    create_user(settings, "u@example.com")
    return login(client, "u@example.com")


def _ids(page: dict[str, Any]) -> list[int]:
    return [item["id"] for item in page["items"]]


def _list(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = client.get(URL, params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- bad input ----------------------------------------------------------------------------

# case -> (body sent as-is, a field the 422's detail must name)
BAD_BODIES: dict[str, tuple[str, str]] = {
    "unknown kind": (json.dumps({**VALID, "kind": "nope"}), "kind"),
    "missing kind": (json.dumps({"name": "x", "config": {}}), "kind"),
    "command without command": (json.dumps({**VALID, "config": {}}), "config.command"),
    "empty command": (json.dumps({**VALID, "config": {"command": ""}}), "config.command"),
    "unknown config field": (
        json.dumps({**VALID, "config": {"command": "true", "bogus": 1}}),
        "config.bogus",
    ),
    "counter steps out of range": (
        json.dumps({**VALID, "kind": "demo.counter", "config": {"steps": 0}}),
        "config.steps",
    ),
    "negative priority": (json.dumps({**VALID, "priority": -1}), "priority"),
    "priority over 100": (json.dumps({**VALID, "priority": 101}), "priority"),
    "priority not a number": (json.dumps({**VALID, "priority": "high"}), "priority"),
    "1 MB name": (json.dumps({**VALID, "name": "n" * 1_000_000}), "name"),
    "empty name": (json.dumps({**VALID, "name": ""}), "name"),
    "zero max_attempts": (json.dumps({**VALID, "max_attempts": 0}), "max_attempts"),
    "tag too long": (json.dumps({**VALID, "tags": ["t" * 65]}), "tags"),
    "negative gpu memory": (
        json.dumps({**VALID, "resources": {"min_gpu_memory_gb": -1}}),
        "resources.min_gpu_memory_gb",
    ),
    "unknown platform": (
        json.dumps({**VALID, "resources": {"platforms": ["mars"]}}),
        "resources.platforms",
    ),
    "a list, not an object": ("[1, 2]", "body"),
    # What the detail should name here is pinned by test_malformed_json_detail_names_the_body.
    "malformed JSON": ('{"name": "x", "kind": ', ""),
}


def _assert_nothing_stored_or_queued(
    client: TestClient, settings: Settings, user: dict[str, str], case: str
) -> None:
    assert _list(client, user)["items"] == [], case
    assert stored_rows(settings) == {"experiment": 0, "experiment_tag": 0}, case
    assert ready_keys(settings) == [], case
    assert ready_members(settings) == {}, case


def test_bad_input_is_422_naming_the_field_and_nothing_is_stored_or_queued(
    client: TestClient, settings: Settings, user: dict[str, str]
) -> None:
    # One app for every case (start-up is the slow part); each case is checked on its own.
    headers = {**user, "Content-Type": "application/json"}
    for case, (body, field) in BAD_BODIES.items():
        response = client.post(URL, content=body, headers=headers)
        assert response.status_code == 422, (case, response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, str) and field in detail, (case, detail)
        # The 1 MB name must not be echoed back (FastAPI's default puts the input in errors).
        assert len(response.content) < 10_000, (case, len(response.content))
        _assert_nothing_stored_or_queued(client, settings, user, case)


def test_the_checks_above_see_a_stored_experiment(
    client: TestClient, settings: Settings, user: dict[str, str]
) -> None:
    """Control: the same inspection does see a valid create in the DB and in Redis."""
    experiment = submit(client, user, "good", tags=["a", "b"])
    assert _ids(_list(client, user)) == [experiment]
    assert stored_rows(settings) == {"experiment": 1, "experiment_tag": 2}
    owner = client.get("/auth/me", headers=user).json()["id"]
    assert ready_members(settings) == {experiment: "cpu"}
    assert ready_keys(settings) == [f"baton:ready:cpu:{owner}".encode()], "the owner's lane"


def test_malformed_json_detail_names_the_body(client: TestClient, user: dict[str, str]) -> None:
    body, _ = BAD_BODIES["malformed JSON"]
    response = client.post(URL, content=body, headers={**user, "Content-Type": "application/json"})
    assert response.status_code == 422
    # /auth/login already answers "body: malformed JSON" for the same mistake.
    assert response.json()["detail"].startswith("body:"), response.json()["detail"]


# --- reading --------------------------------------------------------------------------------


def test_get_shows_status_and_attempts(
    client: TestClient, settings: Settings, user: dict[str, str]
) -> None:
    experiment = submit(client, user, "watched")
    body = client.get(f"{URL}/{experiment}", headers=user).json()
    assert body["status"] == "queued" and body["attempts"] == [] and body["attempt_count"] == 0

    token = create_worker_token(settings)
    worker = register(client, token)
    grant = claim(client, token, worker)
    assert grant is not None and grant["experiment_id"] == experiment
    body = client.get(f"{URL}/{experiment}", headers=user).json()
    assert body["status"] == "running" and body["attempt_count"] == 1
    [attempt] = body["attempts"]
    assert attempt["number"] == 1 and attempt["worker_id"] == worker and attempt["outcome"] is None
    assert "lease_token" not in attempt, "the lease token is the worker's secret"


def test_list_filters_by_status_kind_and_tag(client: TestClient, user: dict[str, str]) -> None:
    a = submit(client, user, "a", tags=["x"])
    b = submit(client, user, "b", kind="demo.counter", config={"steps": 3}, tags=["y", "x"])
    c = submit(client, user, "c", tags=["y"])
    d = submit(client, user, "d")
    assert client.post(f"{URL}/{d}/cancel", headers=user).status_code == 200

    assert _ids(_list(client, user)) == [d, c, b, a]
    assert _ids(_list(client, user, status="canceled")) == [d]
    assert _ids(_list(client, user, status="queued")) == [c, b, a]
    assert _ids(_list(client, user, status="running")) == []
    assert _ids(_list(client, user, kind="demo.counter")) == [b]
    assert _ids(_list(client, user, kind="command")) == [d, c, a]
    assert _ids(_list(client, user, tag="x")) == [b, a]
    assert _ids(_list(client, user, tag="y")) == [c, b]
    assert _ids(_list(client, user, tag="nope")) == []
    assert _ids(_list(client, user, tag="y", kind="command")) == [c]
    # Tags come back sorted, whatever order they were given in.
    assert _list(client, user, kind="demo.counter")["items"][0]["tags"] == ["x", "y"]

    bad = client.get(URL, params={"status": "sleeping"}, headers=user)
    assert bad.status_code == 422 and "status" in bad.json()["detail"], bad.text


def _walk(client: TestClient, headers: dict[str, str], **params: Any) -> list[list[int]]:
    """Every page, following next_cursor until it is None."""
    pages: list[list[int]] = []
    cursor: int | None = None
    while True:
        page = _list(client, headers, **params, **({"cursor": cursor} if cursor else {}))
        pages.append(_ids(page))
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert cursor == pages[-1][-1], "the cursor is the last id of the page"
        assert len(pages) < 20, "pagination does not end"


@pytest.mark.parametrize(
    ("count", "sizes"),
    # With an exact multiple, the last full page must already say "no more" (no empty page).
    [(7, [3, 3, 1]), (6, [3, 3])],
    ids=["partial-last-page", "exact-multiple"],
)
def test_cursor_pagination_walks_everything_once_newest_first(
    client: TestClient, user: dict[str, str], count: int, sizes: list[int]
) -> None:
    created = [submit(client, user, f"e{i}") for i in range(count)]
    pages = _walk(client, user, limit=3)
    flat = [i for page in pages for i in page]
    assert [len(p) for p in pages] == sizes
    assert all(x > y for x, y in itertools.pairwise(flat)), "ids strictly descending"
    assert len(set(flat)) == len(flat) == count
    assert flat == sorted(created, reverse=True)


def test_cursor_pagination_keeps_the_filter(client: TestClient, user: dict[str, str]) -> None:
    tagged = [submit(client, user, f"e{i}", tags=["even"] if i % 2 == 0 else []) for i in range(7)]
    expected = sorted(tagged[0::2], reverse=True)
    pages = _walk(client, user, tag="even", limit=2)
    assert [i for page in pages for i in page] == expected
    assert [len(p) for p in pages] == [2, 2]


# --- cancel and retry -------------------------------------------------------------------------


def test_cancel_of_a_queued_experiment_takes_it_out_of_redis(
    client: TestClient, settings: Settings, user: dict[str, str]
) -> None:
    keep = submit(client, user, "keep")
    gone = submit(client, user, "gone")
    assert set(ready_members(settings)) == {keep, gone}

    response = client.post(f"{URL}/{gone}/cancel", headers=user)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "canceled" and response.json()["finished_at"] is not None
    assert set(ready_members(settings)) == {keep}

    # A worker gets the other one and then nothing: the canceled one can never be claimed.
    token = create_worker_token(settings)
    worker = register(client, token)
    grant = claim(client, token, worker)
    assert grant is not None and grant["experiment_id"] == keep
    assert claim(client, token, worker) is None

    again = client.post(f"{URL}/{gone}/cancel", headers=user)
    assert again.status_code == 409, again.text


def test_retry_of_an_unfinished_experiment_is_409(
    client: TestClient, settings: Settings, user: dict[str, str]
) -> None:
    queued = submit(client, user, "queued")
    running = submit(client, user, "running")
    token = create_worker_token(settings)
    worker = register(client, token)
    # Claim both, then give one back: requeued after a preempted attempt, it is "queued" with
    # a closed attempt behind it, the case most likely to confuse a "finished?" check.
    first = claim(client, token, worker)
    second = claim(client, token, worker)
    assert first is not None and second is not None
    by_id = {first["experiment_id"]: first, second["experiment_id"]: second}
    finish(client, token, "release", by_id[queued])
    assert client.get(f"{URL}/{queued}", headers=user).json()["status"] == "queued"
    assert client.get(f"{URL}/{running}", headers=user).json()["status"] == "running"

    for experiment in (queued, running):
        response = client.post(f"{URL}/{experiment}/retry", headers=user)
        assert response.status_code == 409, response.text
        assert client.get(f"{URL}/{experiment}", headers=user).json()["attempt_count"] == 1

    finish(client, token, "complete", by_id[running], result={"ok": True})
    response = client.post(f"{URL}/{running}/retry", headers=user)
    assert response.status_code == 409 and "succeeded" in response.json()["detail"], response.text


def test_retry_of_a_canceled_experiment_queues_it_again(
    client: TestClient, settings: Settings, user: dict[str, str]
) -> None:
    experiment = submit(client, user, "again")
    assert client.post(f"{URL}/{experiment}/cancel", headers=user).status_code == 200
    assert ready_members(settings) == {}

    response = client.post(f"{URL}/{experiment}/retry", headers=user)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "queued" and response.json()["finished_at"] is None
    assert ready_members(settings) == {experiment: "cpu"}
