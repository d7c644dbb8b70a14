"""The one model client every application talks to: its protocol, its result types and `load_client`.

Two implementations: `LocalModel` (an HF folder run in this process through the engine) and `OpenAIModel`
(any OpenAI-compatible endpoint, through the official `openai` package). Evaluation, the agent, the
knowledge base and search program against `ModelClient` and never import the engine's internals.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from puyu.errors import PuyuError
from puyu.generation.sampling import SamplingParams

CHAT_NAME = re.compile(r"chat|instruct|sft|dpo|-it\b", re.IGNORECASE)


class TaskUnsupported(PuyuError):
    """The model cannot do this kind of request at all (e.g. an endpoint without prompt logprobs)."""


@dataclass
class ToolCall:
    """One function call the model asked for.

    `arguments` is a dict when the model wrote valid JSON, else the raw string (callers decide whether to
    repair, retry or report it; nothing here executes it).
    """

    name: str
    arguments: dict[str, Any] | str
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    @classmethod
    def from_openai(cls, call: dict[str, Any]) -> ToolCall:
        """From an OpenAI-shaped `{"id", "function": {"name", "arguments": "<json>"}}` (or its parsed form)."""
        function = call.get("function") or {}
        raw = function.get("arguments", "")
        arguments: dict[str, Any] | str = raw if isinstance(raw, (dict, str)) else str(raw)
        if isinstance(raw, str):
            try:
                parsed = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                arguments = parsed
        kwargs = {"id": call["id"]} if call.get("id") else {}
        return cls(name=str(function.get("name", "")), arguments=arguments, **kwargs)

    def to_openai(self) -> dict[str, Any]:
        """The assistant message's `tool_calls` entry."""
        arguments = (
            self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments, ensure_ascii=False)
        )
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": arguments}}


@dataclass
class ChatResult:
    """A finished assistant turn: its text (tool-call markup removed) and the calls it asked for."""

    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def message(self) -> dict[str, Any]:
        """The turn as an OpenAI assistant message, ready to append to the conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        return message

    @classmethod
    def from_deltas(cls, deltas: list[ChatDelta]) -> ChatResult:
        """A streamed turn put back together (its last delta carries the calls, finish reason and usage)."""
        last = deltas[-1] if deltas else ChatDelta(finish_reason="stop")
        return cls(
            content="".join(d.content for d in deltas),
            tool_calls=last.tool_calls,
            finish_reason=last.finish_reason or "stop",
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
        )


@dataclass
class ChatDelta:
    """A piece of a streamed turn: new content; the last piece also has the tool calls, the finish reason and
    the token counts (where the backend reports them)."""

    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@runtime_checkable
class ModelClient(Protocol):
    """What applications need from a model.

    `loglikelihood` takes (context, continuation) pairs and returns (sum of the continuation's token
    log-probabilities, whether greedy decoding would produce exactly the continuation); `perplexity` returns
    (sum of negative log-likelihoods, number of scored tokens) per text.
    """

    name: str
    max_length: int
    is_chat: bool

    def generate(self, prompts: list[str], params: SamplingParams) -> list[str]: ...

    def chat(self, conversations: list[list[dict]], params: SamplingParams) -> list[str]: ...

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]: ...

    def perplexity(self, texts: list[str]) -> list[tuple[float, int]]: ...

    def complete_chat(
        self, messages: list[dict], params: SamplingParams, tools: list[dict] | None = None
    ) -> ChatResult: ...

    def stream_chat(
        self, messages: list[dict], params: SamplingParams, tools: list[dict] | None = None
    ) -> Iterator[ChatDelta]: ...

    async def acomplete_chat(
        self, messages: list[dict], params: SamplingParams, tools: list[dict] | None = None
    ) -> ChatResult: ...

    def astream_chat(
        self, messages: list[dict], params: SamplingParams, tools: list[dict] | None = None
    ) -> AsyncIterator[ChatDelta]: ...

    def complete_text(self, prompt: str, params: SamplingParams) -> str: ...

    def embed(self, texts: list[str]) -> list[list[float]]: ...


def default_chat(name: str) -> bool:
    """Whether a model named like this is a chat model ('-chat', 'instruct', 'sft' …) when nothing else says."""
    return bool(CHAT_NAME.search(name))


def load_client(spec: str, **kwargs: Any) -> ModelClient:
    """A client for `spec`: 'http(s)://…' → `OpenAIModel`, an HF folder → `LocalModel`.

    Args:
        spec: an endpoint URL (/v1 is added to a bare host) or a model folder.
        **kwargs: options of the implementation; those the other one takes are ignored (api_key, model,
            concurrency for endpoints; batch_size, device, dtype for folders; chat for both).
    """
    if spec.startswith(("http://", "https://")):
        from puyu.client.openai_http import OpenAIModel

        keep = {"api_key", "model", "concurrency", "chat", "timeout"}
        return OpenAIModel(spec, **{k: v for k, v in kwargs.items() if k in keep})
    from puyu.client.local import LocalModel

    if not Path(spec).is_dir():
        raise PuyuError(f"{spec}: not a model folder (and not an http(s):// endpoint)")
    keep = {"batch_size", "device", "chat", "dtype"}
    return LocalModel(spec, **{k: v for k, v in kwargs.items() if k in keep})
