"""Tool-call protocols: `openai` (native tool_calls), `react` (text) and `internlm2` (plugin + interpreter)."""

from __future__ import annotations

from puyu.agent.protocols.base import INTERPRETER_NAMES, AgentProtocol, Turn
from puyu.agent.protocols.internlm2 import InternLM2Protocol
from puyu.agent.protocols.openai import OpenAIProtocol
from puyu.agent.protocols.react import ReActProtocol
from puyu.errors import PuyuError

PROTOCOLS = {"openai": OpenAIProtocol, "react": ReActProtocol, "internlm2": InternLM2Protocol}


def auto_protocol(model: object, tools: list | None = None) -> str:
    """The protocol to use for a model, from its chat template.

    An endpoint (no template here) gets native tools. A local model's template renders tools in its family's own
    markup, so native tools work for every family; InternLM2 with an interpreter tool gets the `internlm2`
    protocol, whose `<|interpreter|>` turns the native path has no place for. A template with no tool format at
    all gets text ReAct.
    """
    template = getattr(model, "template", None)
    if template is None:
        return "openai"
    # A folder template without a tool format is backed by its family's built-in one for tool requests.
    family = getattr(getattr(getattr(model, "model", None), "config", None), "family", None)
    tool_format = getattr(template, "tool_format", None) or family
    has_interpreter = any(getattr(t, "name", "") in INTERPRETER_NAMES for t in tools or [])
    if tool_format == "internlm2" and has_interpreter:
        return "internlm2"
    return "openai" if tool_format else "react"


def make_protocol(name: str | AgentProtocol, model: object, tools: list | None = None) -> AgentProtocol:
    if isinstance(name, AgentProtocol):
        return name
    if name == "auto":
        name = auto_protocol(model, tools)
    if name not in PROTOCOLS:
        raise PuyuError(f"unknown protocol {name!r}; expected auto, {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]()


__all__ = [
    "PROTOCOLS",
    "AgentProtocol",
    "InternLM2Protocol",
    "OpenAIProtocol",
    "ReActProtocol",
    "Turn",
    "auto_protocol",
    "make_protocol",
]
