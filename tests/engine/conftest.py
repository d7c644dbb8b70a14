"""A tiny random InternLM2 folder shared by the engine tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from puyu.model.checkpoint import load_model
from puyu.model.decoder import CausalLM
from puyu.model.init import init_model_folder
from puyu.tokenizer import Tokenizer


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_model_folder("internlm2-tiny", tmp_path_factory.mktemp("tiny") / "model", seed=3)


@pytest.fixture(scope="session")
def tiny(tiny_folder: Path) -> tuple[CausalLM, Tokenizer]:
    return load_model(tiny_folder, dtype="float32"), Tokenizer.from_pretrained(tiny_folder)
