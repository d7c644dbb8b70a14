"""Scripted stand-ins for `puyu.eval.models.EvalModel` used by the needle and judge tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from puyu.generation.sampling import SamplingParams
from puyu.model.init import init_model_folder

NEEDLE = "The secret ingredient of the harbour soup is purple basil."
QUESTION = "What is the secret ingredient of the harbour soup?"
HAYSTACK = (
    "The river town wakes early. Boats come in before dawn, and the market fills with fish and bread. "
    "Children run between the stalls! Does anyone ever sleep here? Old sailors say the tide knows every name. "
    "In winter the fog stays until noon.\nThe library keeps maps of every reef. Nobody reads them twice."
)


class ScriptedModel:
    """Answers through a function of the prompt text; records every prompt it was asked.

    Args:
        reply: maps the (last user message or completion) prompt to the reply.
        max_length: the context limit the model reports.
    """

    def __init__(self, reply: Callable[[str], str], *, name: str = "scripted", max_length: int = 100_000) -> None:
        self.reply = reply
        self.name = name
        self.max_length = max_length
        self.prompts: list[str] = []
        self.conversations: list[list[dict]] = []

    def generate(self, prompts: list[str], params: SamplingParams) -> list[str]:
        self.prompts.extend(prompts)
        return [self.reply(p) for p in prompts]

    def chat(self, conversations: list[list[dict]], params: SamplingParams) -> list[str]:
        self.conversations.extend(conversations)
        return self.generate([c[-1]["content"] for c in conversations], params)

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        return [(0.0, True) for _ in requests]

    def perplexity(self, texts: list[str]) -> list[tuple[float, int]]:
        return [(0.0, 1) for _ in texts]


def window_reader(window: int) -> Callable[[str], str]:
    """A reader that only sees the last `window` characters of its prompt: it answers the needle question
    when the needle lies entirely inside that window, so which cells succeed is known in advance."""

    def reply(prompt: str) -> str:
        if NEEDLE in prompt[-window:]:
            return "It is purple basil."
        return "I could not find that in the document."

    return reply


class Recording:
    """Wraps a real model and records the conversations sent to it (everything else passes through)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.conversations: list[list[dict]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def chat(self, conversations: list[list[dict]], params: SamplingParams) -> list[str]:
        self.conversations.extend(conversations)
        return self.inner.chat(conversations, params)


def tiny_model_folder(out: Path, max_length: int = 1024) -> Path:
    """A random internlm2-shaped model (hidden 64, 2 layers) with the built-in byte-level tokenizer."""
    return init_model_folder("internlm2-tiny", out, overrides={"max_position_embeddings": max_length})


@contextmanager
def served(folder: Path, name: str = "tiny") -> Iterator[str]:
    """`puyu serve`'s app over the real engine on a free loopback port; yields the base URL (…/v1).
    Skips the test where the server or engine cannot be imported."""
    import pytest

    try:
        from puyu.engine.async_engine import AsyncLLMEngine
        from puyu.engine.engine import LLMEngine
        from puyu.serve.app import create_app
        from server_support import live_server
    except ImportError as exc:
        pytest.skip(f"puyu serve is not available: {exc}")
    with live_server(create_app(AsyncLLMEngine(LLMEngine.from_pretrained(folder)), model_name=name)) as url:
        yield url
