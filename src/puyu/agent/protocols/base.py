"""What every tool-call protocol does: turn a protocol-neutral conversation into one model request, and the reply
into text plus tool calls.

The conversation is always kept in OpenAI chat shape (assistant `tool_calls`, `tool` results), so a session can be
continued under another protocol; a protocol that needs the model's exact reply text keeps it in the assistant
message's `raw` field.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from puyu.agent.tools import Tool
from puyu.client import ModelClient, ToolCall
from puyu.generation.sampling import SamplingParams

# Names under which models trained on other frameworks call the interpreter; all run puyu's `python` tool.
INTERPRETER_NAMES = ("python", "IPythonInterpreter", "PythonInterpreter", "IPythonInteractive")

REPAIR_PROMPT = (
    "Your last reply could not be read as a tool call ({error}). Reply again, following the format exactly: "
    "either one tool call or a final answer."
)
ANSWER_NOW_PROMPT = "You have no tool calls left. Give your final answer now, based on the information above."


@dataclasses.dataclass
class Turn:
    """One model reply, read by a protocol.

    Attributes:
        content: the reply's text without tool-call markup (the thought before a call, or the final answer).
        calls: the tool calls it asked for (empty for a final answer).
        raw: the model's text exactly as generated.
        error: why the reply did not parse as the protocol expects (None when it did).
    """

    content: str
    calls: list[ToolCall] = dataclasses.field(default_factory=list)
    raw: str = ""
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def message(self) -> dict[str, Any]:
        """The reply as an OpenAI assistant message (plus `raw`, for protocols that re-render it verbatim)."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content, "raw": self.raw}
        if self.calls:
            message["tool_calls"] = [call.to_openai() for call in self.calls]
        return message


def tool_call_arguments(call: dict[str, Any]) -> dict[str, Any] | str:
    """An OpenAI `tool_calls` entry's arguments, parsed when they are a JSON object."""
    raw = call.get("function", {}).get("arguments", "")
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return raw
    return parsed if isinstance(parsed, dict) else raw


def arguments_from_text(text: str, tool: Tool | None) -> dict[str, Any] | str:
    """A text protocol's argument string as a dict: JSON when it is an object, else the whole text as the tool's
    single required parameter (e.g. `Action Input: 2 + 3` for the calculator); else the raw string."""
    stripped = text.strip()
    try:
        parsed = json.loads(stripped)
        if isinstance(parsed, dict):
            return parsed
    except ValueError:
        pass
    if tool is not None:
        required = tool.parameters.get("required", [])
        if len(required) == 1:
            return {required[0]: stripped}
    return text


class AgentProtocol:
    """Base class: render a conversation, ask the model once, read the reply."""

    name = "base"

    def step(
        self, model: ModelClient, messages: list[dict], tools: list[Tool], params: SamplingParams, answer_now: bool
    ) -> Turn:
        raise NotImplementedError

    async def astep(
        self, model: ModelClient, messages: list[dict], tools: list[Tool], params: SamplingParams, answer_now: bool
    ) -> Turn:
        # Text protocols have no async model call of their own; run the blocking one in a worker thread.
        return await asyncio.to_thread(self.step, model, messages, tools, params, answer_now)


def with_stops(params: SamplingParams, stops: list[str]) -> SamplingParams:
    return dataclasses.replace(params, stop=list(dict.fromkeys([*params.stop, *stops])))
