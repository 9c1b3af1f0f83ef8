from __future__ import annotations

from pathlib import Path

import pytest
import torch
from video_helpers import tiny_dataset_config

from ml.video.dataset import write_dataset

# Tests share two cores with other work: keep torch to one thread.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("video-dataset")
    assert write_dataset(tiny_dataset_config(), directory, show_progress=False)
    return directory
