from __future__ import annotations

from pathlib import Path

import pytest
import torch
from serve_support import make_model_folder

# The tiny model's forwards take microseconds; with several threads on a shared machine, thread
# hand-offs would cost far more than the work.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("serve") / "tiny")
