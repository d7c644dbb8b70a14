"""A model client that replies from a script: for testing agents (and benchmarking the loop without a model).

Each reply is a `ChatResult` (for chat requests) or a string (for raw-text requests, and for chat requests, where it
becomes the content). Requests are recorded so tests can check what the agent sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator

from puyu.client import ChatDelta, ChatResult
from puyu.generation.sampling import SamplingParams


class ScriptedModel:
    """Replies in order from `replies`; when they run out, repeats the last one (or `default`).

    Args:
        replies: `ChatResult`s or strings.
        delay: seconds each reply takes (to exercise cancellation and concurrency).
        name: the model name.
    """

    max_length = 4096
    is_chat = True

    def __init__(self, replies: Iterable[ChatResult | str], delay: float = 0.0, name: str = "scripted") -> None:
        self.replies = list(replies)
        self.delay = delay
        self.name = name
        self.requests: list[dict] = []
        self._next = 0

    def _reply(self) -> ChatResult | str:
        if not self.replies:
            return ""
        reply = self.replies[min(self._next, len(self.replies) - 1)]
        self._next += 1
        return reply

    def _as_result(self, reply: ChatResult | str) -> ChatResult:
        if isinstance(reply, ChatResult):
            return reply
        return ChatResult(content=reply, completion_tokens=len(reply.split()))

    def complete_chat(
        self, messages: list[dict], params: SamplingParams, tools: list[dict] | None = None
    ) -> ChatResult:
        self.requests.append({"kind": "chat", "messages": messages, "tools": tools, "stop": list(params.stop)})
        if self.delay:
            import time

            time.sleep(self.delay)
        return self._as_result(self._reply())

    async def acomplete_chat(
        self, messages: list[dict], params: SamplingParams, tools: list[dict] | None = None
    ) -> ChatResult:
        self.requests.append({"kind": "chat", "messages": messages, "tools": tools, "stop": list(params.stop)})
        if self.delay:
            await asyncio.sleep(self.delay)
        return self._as_result(self._reply())

    def stream_chat(
        self, messages: list[dict], params: SamplingParams, tools: list[dict] | None = None
    ) -> Iterator[ChatDelta]:
        result = self.complete_chat(messages, params, tools)
        yield ChatDelta(result.content, result.tool_calls, result.finish_reason)

    async def astream_chat(
        self, messages: list[dict], params: SamplingParams, tools: list[dict] | None = None
    ) -> AsyncIterator[ChatDelta]:
        result = await self.acomplete_chat(messages, params, tools)
        yield ChatDelta(result.content, result.tool_calls, result.finish_reason)

    def complete_text(self, prompt: str, params: SamplingParams) -> str:
        self.requests.append({"kind": "text", "prompt": prompt, "stop": list(params.stop)})
        if self.delay:
            import time

            time.sleep(self.delay)
        reply = self._reply()
        return reply.content if isinstance(reply, ChatResult) else reply

    def generate(self, prompts: list[str], params: SamplingParams) -> list[str]:
        return [self.complete_text(prompt, params) for prompt in prompts]

    def chat(self, conversations: list[list[dict]], params: SamplingParams) -> list[str]:
        return [self.complete_chat(messages, params).content for messages in conversations]
