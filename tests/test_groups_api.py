"""depends_on and experiment groups through the real API, on SQLite and Postgres."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from orchestrator.settings import Settings
from tests.support.api import create_user, create_worker_token, login
from tests.support.experiments import ready_members, stored_rows, submit
from tests.support.workers import claim, finish, register

COMMAND = {"kind": "command", "config": {"command": "true"}}


def _setup(client: TestClient, settings: Settings) -> tuple[dict[str, str], str, int]:
    create_user(settings, "u@example.com")
    token = create_worker_token(settings)
    return login(client, "u@example.com"), token, register(client, token)


def _get(client: TestClient, headers: dict[str, str], experiment_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/experiments/{experiment_id}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_dependent_waits_then_runs_with_its_inputs(client: TestClient, settings: Settings) -> None:
    user, token, worker = _setup(client, settings)
    dataset = submit(client, user, "dataset")
    train = submit(client, user, "train", depends_on=[dataset])
    assert _get(client, user, train)["status"] == "waiting"
    assert _get(client, user, train)["depends_on"] == [dataset]
    assert set(ready_members(settings)) == {dataset}, "a waiting experiment is not claimable"

    grant = claim(client, token, worker)
    assert grant is not None and grant["experiment_id"] == dataset
    assert claim(client, token, worker) is None
    checkpoint = {"key": f"{dataset}/0001-000000000007", "step": 7}
    finish(client, token, "complete", grant, result={"samples": 12}, checkpoint=checkpoint)

    assert _get(client, user, train)["status"] == "queued"
    grant = claim(client, token, worker)
    assert grant is not None and grant["experiment_id"] == train
    assert grant["inputs"] == [
        {
            "experiment_id": dataset,
            "name": "dataset",
            "kind": "command",
            "checkpoint": checkpoint,
            "result": {"samples": 12},
        }
    ]


def test_failed_prerequisite_cancels_dependents_transitively(
    client: TestClient, settings: Settings
) -> None:
    user, token, worker = _setup(client, settings)
    dataset = submit(client, user, "dataset", max_attempts=1)
    train = submit(client, user, "train", depends_on=[dataset])
    compare = submit(client, user, "compare", depends_on=[train])
    grant = claim(client, token, worker)
    assert grant is not None
    finish(client, token, "fail", grant, exit_code=1, reason="disk full")

    for experiment_id, culprit in ((train, dataset), (compare, train)):
        body = _get(client, user, experiment_id)
        assert body["status"] == "canceled"
        assert body["attempts"] == []
        assert f"prerequisite experiment {culprit}" in body["error"]
    # Submitting against a failed prerequisite cancels at once, with the reason.
    late = _get(client, user, submit(client, user, "late", depends_on=[dataset]))
    assert late["status"] == "canceled" and "failed" in late["error"]
    assert ready_members(settings) == {}


def test_unknown_prerequisite_is_refused(client: TestClient, settings: Settings) -> None:
    user, _, _ = _setup(client, settings)
    body = {"name": "x", **COMMAND, "depends_on": [12345]}
    response = client.post("/api/v1/experiments", json=body, headers=user)
    assert response.status_code == 422
    assert "depends_on" in response.json()["detail"]
    assert stored_rows(settings)["experiment"] == 0


def _member(key: str, **fields: Any) -> dict[str, Any]:
    return {"key": key, "name": key, **COMMAND, **fields}


def test_group_with_a_cycle_is_refused_and_stores_nothing(
    client: TestClient, settings: Settings
) -> None:
    user, _, _ = _setup(client, settings)
    body = {
        "name": "cyclic",
        "experiments": [
            _member("a", depends_on=["c"]),
            _member("b", depends_on=["a"]),
            _member("c", depends_on=["b"]),
        ],
    }
    response = client.post("/api/v1/groups", json=body, headers=user)
    assert response.status_code == 422
    assert "cycle" in response.json()["detail"]
    assert stored_rows(settings)["experiment"] == 0
    assert ready_members(settings) == {}


def test_group_runs_branches_and_serves_a_comparison(
    client: TestClient, settings: Settings
) -> None:
    user, token, worker = _setup(client, settings)
    body = {
        "name": "branches",
        "shared_config": {"env": {"DATASET": "shared"}},
        "compare": ["accuracy", "forecast_mae"],
        "experiments": [
            _member("data"),
            *[
                _member(b, depends_on=["data"], config={"command": f"echo {b}"})
                for b in ("i3d", "slowfast")
            ],
            _member("eval", depends_on=["i3d", "slowfast"]),
        ],
    }
    response = client.post("/api/v1/groups", json=body, headers=user)
    assert response.status_code == 201, response.text
    group = response.json()
    by_name = {e["name"]: e for e in group["experiments"]}
    assert [by_name[n]["status"] for n in ("data", "i3d", "slowfast", "eval")] == [
        "queued",
        "waiting",
        "waiting",
        "waiting",
    ]
    assert by_name["i3d"]["config"] == {
        "command": "echo i3d",
        "env": {"DATASET": "shared"},
        "workdir": None,
    }
    assert group["comparison"] is None

    results = {"i3d": {"accuracy": 0.97, "forecast_mae": 0.08}, "slowfast": {"accuracy": 0.95}}
    order = []
    while (grant := claim(client, token, worker)) is not None:
        name = grant["name"]
        order.append(name)
        finish(client, token, "complete", grant, result=results.get(name, {}))
    assert order[0] == "data" and order[-1] == "eval" and set(order[1:3]) == {"i3d", "slowfast"}

    final = client.get(f"/api/v1/groups/{group['id']}", headers=user).json()
    assert final["status"] == "finished"
    rows = {r["name"]: r for r in final["comparison"]}
    assert rows["i3d"]["values"] == {"accuracy": 0.97, "forecast_mae": 0.08}
    assert rows["slowfast"]["values"] == {"accuracy": 0.95, "forecast_mae": None}
    assert all(r["attempts"] == 1 and r["status"] == "succeeded" for r in rows.values())
