"""Checking OpenAI-style `messages` and `tools` before they reach a template.

Templates fail in unhelpful ways on bad input (a literal "None", a Jinja `UndefinedError`), so
every mistake is caught here first and reported as a `PuyuError` naming the message index.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from puyu.errors import PuyuError

ROLES = ("system", "user", "assistant", "tool")


def validate_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check a conversation and return shallow copies of its messages, ready to render.

    Content given in the OpenAI list-of-parts form (`[{"type": "text", "text": ...}, ...]`) is
    joined into one string; nothing else is changed.

    Args:
        messages: dicts with `role` (system, user, assistant or tool) and `content` (a string;
            may be None or absent only on an assistant message that carries `tool_calls`).
            Assistant messages may carry `tool_calls`; tool messages may carry `tool_call_id`
            and `name`.

    Returns:
        The validated messages, as new dicts.

    Raises:
        PuyuError: the first problem found, naming the message index.
    """
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise PuyuError(f"messages must be a list of dicts, got {type(messages).__name__}")
    if not messages:
        raise PuyuError("messages is empty; a chat needs at least one message")
    return [_validate_message(index, message) for index, message in enumerate(messages)]


def _validate_message(index: int, message: Any) -> dict[str, Any]:
    where = f"message {index}"
    if not isinstance(message, Mapping):
        raise PuyuError(f"{where}: expected a dict with 'role' and 'content', got {type(message).__name__}")
    role = message.get("role")
    if role is None:
        raise PuyuError(f"{where}: missing 'role'")
    if role not in ROLES:
        raise PuyuError(f"{where}: unknown role {role!r} (expected one of {', '.join(ROLES)})")
    out = dict(message)

    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        if role != "assistant":
            raise PuyuError(f"{where}: only assistant messages can carry tool_calls, not {role!r} ones")
        if isinstance(tool_calls, (str, bytes, Mapping)) or not isinstance(tool_calls, Sequence):
            raise PuyuError(f"{where}: tool_calls must be a list, got {type(tool_calls).__name__}")
        for number, call in enumerate(tool_calls):
            _validate_tool_call(f"{where}: tool call {number}", call)

    content = message.get("content")
    if content is None:
        if not (role == "assistant" and tool_calls):
            raise PuyuError(f"{where}: missing 'content' (only an assistant message with tool_calls may omit it)")
    else:
        out["content"] = _content_text(where, content)

    for key in ("tool_call_id", "name"):
        value = message.get(key)
        if value is not None and not isinstance(value, str):
            raise PuyuError(f"{where}: {key} must be a string, got {type(value).__name__}")
    return out


def _content_text(where: str, content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, (bytes, Mapping)):
        texts = []
        for number, part in enumerate(content):
            if not isinstance(part, Mapping):
                raise PuyuError(f"{where}: content part {number} must be a dict, got {type(part).__name__}")
            if part.get("type", "text") != "text":
                raise PuyuError(
                    f"{where}: content part {number} has type {part.get('type')!r}; only text parts are supported"
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise PuyuError(f"{where}: content part {number} has no 'text' string")
            texts.append(text)
        # Parts are concatenated as given: the caller decides where whitespace goes.
        return "".join(texts)
    raise PuyuError(f"{where}: content must be a string or a list of text parts, got {type(content).__name__}")


def _validate_tool_call(where: str, call: Any) -> None:
    if not isinstance(call, Mapping):
        raise PuyuError(f"{where} must be a dict, got {type(call).__name__}")
    # OpenAI wraps the call in {"type": "function", "function": {...}}; a bare {"name", "arguments"}
    # is accepted too since templates commonly take either.
    function = call.get("function", call)
    if not isinstance(function, Mapping):
        raise PuyuError(f"{where}: 'function' must be a dict, got {type(function).__name__}")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise PuyuError(f"{where} has no function name")
    arguments = function.get("arguments")
    if arguments is None:
        raise PuyuError(f"{where} ({name}) has no arguments (use {{}} for none)")
    if isinstance(arguments, str):
        try:
            json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise PuyuError(f"{where} ({name}): arguments are not valid JSON ({exc.msg})") from None
    elif not isinstance(arguments, Mapping):
        raise PuyuError(f"{where} ({name}): arguments must be a JSON string or a dict, got {type(arguments).__name__}")


def validate_tools(tools: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Check an OpenAI-style `tools` list (`[{"type": "function", "function": {...}}, ...]`).

    Args:
        tools: the tool schemas, or None.

    Returns:
        The tools as a list (None stays None).

    Raises:
        PuyuError: a tool is not a dict or has no function name.
    """
    if tools is None:
        return None
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise PuyuError(f"tools must be a list of dicts, got {type(tools).__name__}")
    out = []
    for number, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise PuyuError(f"tools[{number}]: expected a dict, got {type(tool).__name__}")
        function = tool.get("function", tool)
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise PuyuError(f"tools[{number}]: missing the function name")
        out.append(dict(tool))
    return out
