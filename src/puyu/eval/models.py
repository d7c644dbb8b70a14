"""The models an evaluation asks: the one model client (`puyu.client`), in-process or over HTTP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from puyu.client.base import ModelClient, TaskUnsupported, default_chat, load_client
from puyu.generation.sampling import SamplingParams

# Evaluators use the client's generation and scoring half: `name`, `max_length`, `generate`, `chat`,
# `loglikelihood`, `perplexity`.
EvalModel = ModelClient

__all__ = ["EvalModel", "TaskUnsupported", "default_chat", "greedy_params", "load_client"]


def __getattr__(name: str) -> Any:
    # `from puyu.eval.models import LocalModel, OpenAIModel` without importing torch/openai up front.
    if name in ("LocalModel", "OpenAIModel"):
        import puyu.client

        return getattr(puyu.client, name)
    raise AttributeError(name)


def greedy_params(max_tokens: int, stop: Sequence[str] = ()) -> SamplingParams:
    """Deterministic decoding for evaluation."""
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, stop=list(stop))
