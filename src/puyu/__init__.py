"""puyu: a toolkit for the whole life of an open large language model."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # `puyu.LLM` and `puyu.SamplingParams` without importing torch for `import puyu` (the CLI's start-up).
    if name == "LLM":
        from puyu.engine.llm import LLM

        return LLM
    if name == "SamplingParams":
        from puyu.generation.sampling import SamplingParams

        return SamplingParams
    raise AttributeError(f"module 'puyu' has no attribute {name!r}")
