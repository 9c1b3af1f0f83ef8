from __future__ import annotations

from pathlib import Path

import pytest
from arc_fixtures import build_tiny_model, tiny_tasks, write_task_folder


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    # The CPU is shared with other test suites; tiny models gain nothing from threads.
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_tasks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_task_folder(tmp_path_factory.mktemp("tiny-tasks"), tiny_tasks())
