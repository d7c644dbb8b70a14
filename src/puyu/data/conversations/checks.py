"""What a training conversation needs beyond what a chat template needs.

`puyu.chat.validate_messages` checks roles, content and tool calls; on top of it this module gives
tool calls one shape (`{"type": "function", "function": {"name", "arguments": dict}}`, the shape
`transformers` templates render), checks the per-message `loss` flag, and checks that a supervised
conversation has something to train on.

Every error is a `PuyuError` whose message starts with a short kind ("no assistant turn",
"invalid message: ...") so that reports can count errors by kind.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from puyu.chat import validate_messages, validate_tools
from puyu.errors import PuyuError, one_line

LOSS_KEY = "loss"
# OpenAI's fine-tuning format marks an assistant turn to skip with `"weight": 0`.
WEIGHT_KEY = "weight"


def record_error(kind: str, detail: str | None = None) -> PuyuError:
    """A `PuyuError` reading "<kind>: <detail>" (or just the kind)."""
    return PuyuError(f"{kind}: {detail}" if detail else kind)


def clean_messages(messages: Any, part: str | None = None) -> list[dict[str, Any]]:
    """Validate messages and give them the output shape, without the supervised-training checks.

    Args:
        messages: OpenAI-style messages; `tool_calls` arguments may be a JSON string or a dict; an
            assistant turn may carry `loss` (bool) or `weight` (0 or 1).
        part: which part of a record these are ("prompt", "chosen"), to name in errors.

    Returns:
        New message dicts: content a string, tool-call arguments a dict, `weight` turned into `loss`,
        `loss: false` on a non-assistant turn dropped (only assistant turns are ever trained on).

    Raises:
        PuyuError: "empty conversation", or "invalid message: message N: ..." for the first problem.
    """
    if isinstance(messages, list) and not messages:
        raise record_error("empty conversation")
    prefix = f"{part}: " if part else ""
    try:
        checked = validate_messages(messages)
    except PuyuError as exc:
        raise record_error("invalid message", prefix + one_line(exc)) from None
    return [
        _clean_message(f"{prefix}message {index}", message, checked[:index]) for index, message in enumerate(checked)
    ]


def _clean_message(where: str, message: dict[str, Any], before: list[dict[str, Any]]) -> dict[str, Any]:
    role = message["role"]
    if message.get("content") is None:
        # validate_messages allows a None content on a tool-call turn; the output format always has a string.
        message["content"] = ""
    if not message.get("tool_calls"):
        message.pop("tool_calls", None)  # an empty list says nothing and some templates test for the key
    else:
        message["tool_calls"] = [
            _tool_call(f"{where}: tool call {n}", call) for n, call in enumerate(message["tool_calls"])
        ]
    if role == "tool" and not _follows_tool_call(before):
        raise record_error("invalid message", f"{where}: a tool result with no assistant tool call before it")

    loss = _loss_flag(where, message)
    message.pop(WEIGHT_KEY, None)
    message.pop(LOSS_KEY, None)
    if loss is not None:
        if role == "assistant":
            message[LOSS_KEY] = loss
        elif loss:
            raise record_error("invalid message", f"{where}: loss applies only to assistant turns, not {role!r} ones")
    return message


def _loss_flag(where: str, message: Mapping[str, Any]) -> bool | None:
    loss = message.get(LOSS_KEY)
    weight = message.get(WEIGHT_KEY)
    if loss is not None and not isinstance(loss, bool):
        raise record_error("invalid message", f"{where}: loss must be true or false, got {loss!r}")
    if weight is not None:
        if isinstance(weight, bool) or weight not in (0, 1):
            raise record_error("invalid message", f"{where}: weight must be 0 or 1, got {weight!r}")
        if loss is not None and loss != bool(weight):
            raise record_error("invalid message", f"{where}: loss {loss} contradicts weight {weight}")
        return bool(weight)
    return loss


def _follows_tool_call(before: list[dict[str, Any]]) -> bool:
    # Tool results answer the nearest earlier assistant turn; several results may follow one call turn.
    for message in reversed(before):
        if message["role"] == "assistant":
            return bool(message.get("tool_calls"))
        if message["role"] != "tool":
            return False
    return False


def _tool_call(where: str, call: Mapping[str, Any]) -> dict[str, Any]:
    # validate_messages has checked the name and that string arguments parse.
    function = call.get("function", call)
    arguments = function["arguments"]
    if isinstance(arguments, str):
        arguments = json.loads(arguments)
    if not isinstance(arguments, Mapping):
        raise record_error(
            "invalid message", f"{where}: arguments must be a JSON object, got {type(arguments).__name__}"
        )
    out: dict[str, Any] = {"type": "function", "function": {"name": function["name"], "arguments": dict(arguments)}}
    if isinstance(call.get("id"), str):
        out = {"id": call["id"], **out}
    return out


def check_sft(messages: list[dict[str, Any]]) -> None:
    """The checks a supervised (SFT) conversation needs on top of `clean_messages`.

    Raises:
        PuyuError: "no assistant turn"; "no trained turn" (every assistant turn has `loss: false`);
            "last turn not assistant" (a trailing user or tool turn is usually a cut conversation,
            and nothing after the last assistant turn is trained on).
    """
    assistants = [message for message in messages if message["role"] == "assistant"]
    if not assistants:
        raise record_error("no assistant turn")
    if all(message.get(LOSS_KEY) is False for message in assistants):
        raise record_error("no trained turn", "every assistant turn has loss false")
    last = messages[-1]["role"]
    if last != "assistant":
        raise record_error("last turn not assistant", f"the conversation ends with a {last!r} turn")


def clean_tools(tools: Any) -> list[dict[str, Any]] | None:
    """Tool schemas in the OpenAI shape, or None when there are none.

    Args:
        tools: a list (or a JSON string of a list, as ShareGPT sets store it) of tool schemas, each
            either `{"type": "function", "function": {...}}` or a bare `{"name", "description",
            "parameters"}`; None, "" and [] mean no tools.

    Raises:
        PuyuError: "invalid tools: ...".
    """
    if tools is None or tools == "" or tools == []:
        return None
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as exc:
            raise record_error("invalid tools", f"not valid JSON ({exc.msg})") from None
        if tools == []:
            return None
    if isinstance(tools, Mapping):
        tools = [tools]
    try:
        checked = validate_tools(tools)
    except PuyuError as exc:
        raise record_error("invalid tools", one_line(exc)) from None
    assert checked is not None
    return [tool if "function" in tool else {"type": "function", "function": tool} for tool in checked]
