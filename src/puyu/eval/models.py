"""The models an evaluation asks: one protocol, in-process (`LocalModel`) or over HTTP (`OpenAIModel`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from puyu.errors import PuyuError
from puyu.generation.sampling import SamplingParams

CHAT_NAME = re.compile(r"chat|instruct|sft|dpo|-it\b", re.IGNORECASE)


@runtime_checkable
class EvalModel(Protocol):
    """What evaluators need from a model.

    `loglikelihood` takes (context, continuation) pairs and returns (sum of the continuation's token
    log-probabilities, whether greedy decoding would produce exactly the continuation); `perplexity` returns
    (sum of negative log-likelihoods, number of scored tokens) per text.
    """

    name: str
    max_length: int

    def generate(self, prompts: list[str], params: SamplingParams) -> list[str]: ...

    def chat(self, conversations: list[list[dict]], params: SamplingParams) -> list[str]: ...

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]: ...

    def perplexity(self, texts: list[str]) -> list[tuple[float, int]]: ...


class TaskUnsupported(PuyuError):
    """The model cannot run this kind of task at all (e.g. an endpoint without prompt logprobs)."""


def default_chat(name: str) -> bool:
    """Whether a model named like this is a chat model ('-chat', 'instruct', 'sft' …) when nobody says."""
    return bool(CHAT_NAME.search(name))


def load_eval_model(spec: str, **kwargs: Any) -> EvalModel:
    """'http(s)://…' → `OpenAIModel`, anything else → `LocalModel` (an HF folder)."""
    if spec.startswith(("http://", "https://")):
        from puyu.eval.openai_model import OpenAIModel

        return OpenAIModel(
            spec, **{k: v for k, v in kwargs.items() if k in {"api_key", "model", "concurrency", "chat"}}
        )
    from puyu.eval.local_model import LocalModel

    if not Path(spec).is_dir():
        raise PuyuError(f"{spec}: not a model folder (and not an http(s):// endpoint)")
    return LocalModel(spec, **{k: v for k, v in kwargs.items() if k in {"batch_size", "device", "chat", "dtype"}})


def __getattr__(name: str) -> Any:
    # `from puyu.eval.models import LocalModel, OpenAIModel` without importing torch/openai up front.
    if name == "LocalModel":
        from puyu.eval.local_model import LocalModel

        return LocalModel
    if name == "OpenAIModel":
        from puyu.eval.openai_model import OpenAIModel

        return OpenAIModel
    raise AttributeError(name)


def greedy_params(max_tokens: int, stop: Sequence[str] = ()) -> SamplingParams:
    """Deterministic decoding for evaluation."""
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, stop=list(stop))
