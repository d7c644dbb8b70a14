"""The typed step events an agent run yields; the CLI, the HTTP endpoint and traces all render these.

`to_dict()` gives the wire shape: `{"type": "thought" | "tool_call" | "tool_result" | "answer" | "error" |
"token", ...}`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar


@dataclasses.dataclass
class Event:
    type: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **dataclasses.asdict(self)}


@dataclasses.dataclass
class TokenEvent(Event):
    """Model text as it streams (only where the model is streamed)."""

    type: ClassVar[str] = "token"
    content: str


@dataclasses.dataclass
class ThoughtEvent(Event):
    """Text the model wrote before its tool calls."""

    type: ClassVar[str] = "thought"
    content: str


@dataclasses.dataclass
class ToolCallEvent(Event):
    type: ClassVar[str] = "tool_call"
    id: str
    name: str
    arguments: dict[str, Any] | str


@dataclasses.dataclass
class ToolResultEvent(Event):
    """A tool's result; `artifacts` are `{"name", "mime", "url"}` of files it made in the session workspace."""

    type: ClassVar[str] = "tool_result"
    id: str
    name: str
    content: str
    error: bool = False
    artifacts: list[dict[str, str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class AnswerEvent(Event):
    type: ClassVar[str] = "answer"
    content: str


@dataclasses.dataclass
class ErrorEvent(Event):
    """Something went wrong but was handled (a reply that did not parse, a model failure)."""

    type: ClassVar[str] = "error"
    message: str
