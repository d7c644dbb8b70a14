"""The native protocol: tools go to the model as OpenAI function specs and calls come back as `tool_calls`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from puyu.agent.protocols.base import ANSWER_NOW_PROMPT, AgentProtocol, Turn
from puyu.agent.tools import Tool
from puyu.client import ChatDelta, ChatResult, ModelClient
from puyu.generation.sampling import SamplingParams

_OPENAI_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")


def openai_messages(messages: list[dict]) -> list[dict]:
    """The conversation with puyu's own bookkeeping fields removed (endpoints reject unknown keys)."""
    return [{key: m[key] for key in _OPENAI_KEYS if key in m} for m in messages]


def turn_from_result(result: ChatResult) -> Turn:
    malformed = [call.name for call in result.tool_calls if isinstance(call.arguments, str)]
    error = f"arguments of {', '.join(malformed)} are not a JSON object" if malformed else None
    return Turn(
        content=result.content,
        calls=result.tool_calls,
        raw=result.content,
        error=error,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
    )


class OpenAIProtocol(AgentProtocol):
    """Native `tools` / `tool_calls`; the last turn is asked without tools so the model must answer."""

    name = "openai"

    def _request(self, messages: list[dict], tools: list[Tool], answer_now: bool) -> tuple[list[dict], list | None]:
        request = openai_messages(messages)
        if answer_now:
            return [*request, {"role": "user", "content": ANSWER_NOW_PROMPT}], None
        return request, [t.spec() for t in tools] or None

    def step(
        self, model: ModelClient, messages: list[dict], tools: list[Tool], params: SamplingParams, answer_now: bool
    ) -> Turn:
        request, specs = self._request(messages, tools, answer_now)
        return turn_from_result(model.complete_chat(request, params, tools=specs))

    async def astep(
        self, model: ModelClient, messages: list[dict], tools: list[Tool], params: SamplingParams, answer_now: bool
    ) -> Turn:
        request, specs = self._request(messages, tools, answer_now)
        return turn_from_result(await model.acomplete_chat(request, params, tools=specs))

    async def astream(
        self, model: ModelClient, messages: list[dict], tools: list[Tool], params: SamplingParams, answer_now: bool
    ) -> AsyncIterator[ChatDelta]:
        """The turn's deltas as the model writes them (the last carries the calls)."""
        request, specs = self._request(messages, tools, answer_now)
        async for delta in model.astream_chat(request, params, tools=specs):
            yield delta
