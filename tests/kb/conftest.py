from __future__ import annotations

from pathlib import Path

import pytest
from kb_support import make_encoder_folder


@pytest.fixture(scope="session")
def encoder_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_encoder_folder(tmp_path_factory.mktemp("encoder") / "tiny-bert")
