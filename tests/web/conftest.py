from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

# The serve tests' helpers (tiny model folder, scripted engine) are shared with these tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from serve_support import make_model_folder

    return make_model_folder(tmp_path_factory.mktemp("web") / "tiny")
