"""Act as a worker through the real worker API (in-process TestClient)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def register(client: TestClient, token: str, **host: Any) -> int:
    response = client.post(
        "/api/v1/workers/register", json={"name": "w", **host}, headers=bearer(token)
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def claim(client: TestClient, token: str, worker_id: int, wait: float = 0) -> dict[str, Any] | None:
    response = client.post(
        f"/api/v1/workers/{worker_id}/claim", params={"wait": wait}, headers=bearer(token)
    )
    if response.status_code == 204:
        return None
    assert response.status_code == 200, response.text
    grant: dict[str, Any] = response.json()
    return grant


def finish(client: TestClient, token: str, verb: str, grant: dict[str, Any], **body: Any) -> Any:
    response = client.post(
        f"/api/v1/leases/{verb}",
        json={"lease_token": grant["lease_token"], **body},
        headers=bearer(token),
    )
    assert response.status_code == 200, response.text
    return response.json()


def forged_lease_calls(experiment_id: int) -> list[tuple[str, dict[str, Any]]]:
    """Every lease operation (`/api/v1/leases/<verb>`, body without the lease token), as a
    worker that does not hold the lease would try them."""
    return [
        ("heartbeat", {"progress_step": 99, "metrics": {"forged": 1.0}}),
        ("complete", {"result": {"forged": True}}),
        ("fail", {"reason": "forged"}),
        ("release", {"reason": "preempted"}),
        ("logs", {"offset": 0, "data": "forged output"}),
        ("checkpoint-urls", {"step": 1, "files": [{"path": "a", "size": 1}]}),
        ("checkpoint-list", {}),
        ("checkpoint-download", {"key": f"{experiment_id}/1-1"}),
    ]
