"""Tool-call protocols: `openai` (native tool_calls), `react` (text) and `internlm2` (plugin + interpreter)."""

from __future__ import annotations

from puyu.agent.protocols.base import AgentProtocol, Turn
from puyu.agent.protocols.internlm2 import InternLM2Protocol
from puyu.agent.protocols.openai import OpenAIProtocol
from puyu.agent.protocols.react import ReActProtocol
from puyu.errors import PuyuError

PROTOCOLS = {"openai": OpenAIProtocol, "react": ReActProtocol, "internlm2": InternLM2Protocol}


def auto_protocol(model: object) -> str:
    """The protocol a model is most likely trained for, from its chat template (endpoints: native tools)."""
    template = getattr(model, "template", None)
    if template is None:
        return "openai"
    if getattr(template, "tool_format", None) == "internlm2" or getattr(template, "name", "") == "internlm2":
        return "internlm2"
    if getattr(template, "tool_format", None):
        return "openai"
    return "react"


def make_protocol(name: str | AgentProtocol, model: object) -> AgentProtocol:
    if isinstance(name, AgentProtocol):
        return name
    if name == "auto":
        name = auto_protocol(model)
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
