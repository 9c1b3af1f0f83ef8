"""ml.arc.ttt through the real control plane and real worker agents: a worker is killed
mid-run and another resumes without redoing finished tasks, predicting exactly what an
uninterrupted seeded run predicts."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from arc_contract import ContractRun

from tests.e2e.conftest import Baton, baton_factory  # noqa: F401  (the real-process stack)
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def config(tiny_tasks_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> dict:
    from arc_fixtures import tiny_job_config

    return tiny_job_config(tiny_tasks_dir, tiny_model_dir, tmp_path / "cache")


def test_ttt_killed_worker_resumes_elsewhere(
    baton_factory: Callable[..., Baton],  # noqa: F811
    config: dict,
    tmp_path: Path,
) -> None:
    straight = ContractRun(tmp_path / "straight", "ml.arc.ttt_job", config)
    done = straight.run()
    assert done.returncode == 0, done.stderr[-3000:]

    baton = baton_factory(OMP_NUM_THREADS="1")
    experiment_id = baton.submit(name="arc ttt", kind="ml.arc.ttt", config=config)
    worker_a = baton.start_worker("worker-a")

    # The checkpoint that holds the first finished task: the last one the seeded straight run
    # made before it reported that task done (uploads trail progress over the network).
    messages = straight.messages()
    first_done = next(
        i for i, m in enumerate(messages) if m["type"] == "progress" and m["step"] >= 1
    )
    holds_a_task = max(m["step"] for m in messages[:first_done] if m["type"] == "checkpoint")

    def one_task_saved() -> bool:
        attempts = baton.get(experiment_id)["attempts"]
        return bool(attempts) and (attempts[0]["last_checkpoint_step"] or -1) >= holds_a_task

    wait_until(one_task_saved, timeout=240, interval=0.2, what="the first task's checkpoint")
    worker_a.signal(signal.SIGKILL)
    worker_a.popen.wait(10)
    baton.start_worker("worker-b")

    body = baton.wait_status(experiment_id, "succeeded", "failed", "lost", timeout=300)
    assert body["status"] == "succeeded", body
    first, second = body["attempts"]
    assert first["outcome"] == "lost" and second["outcome"] == "succeeded"
    assert second["resumed_from_step"] == first["last_checkpoint_step"] is not None
    result = body["result"]
    assert len(result["skipped_tasks"]) >= 1, "finished tasks must not be trained again"
    (output,) = (baton.stack.root / "worker-b" / "outputs").glob(f"cp-*/{experiment_id}-2-*")
    resumed = json.loads((output / "submission.json").read_text())
    assert resumed == json.loads((straight.output_dir / "submission.json").read_text())
