"""Instruction-data formats (Alpaca, ShareGPT, OpenAI messages, XTuner) to one chat format.

The output is `{"messages": [...], "tools"?: [...], "id"?: str, "source"?: str}` with OpenAI-style
messages (see `checks.clean_messages`). Other fields of the input record are not carried over.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from puyu.data.conversations.checks import check_sft, clean_messages, clean_tools, record_error
from puyu.errors import PuyuError

CHAT_FORMATS = ("openai", "sharegpt", "alpaca", "xtuner")

# Alpaca's own prompt puts a blank line between the instruction and its input (LLaMA-Factory joins
# them with a single newline instead).
ALPACA_INPUT_SEPARATOR = "\n\n"

# ShareGPT speaker tags (LLaMA-Factory's set) to roles; a function_call turn becomes assistant tool_calls.
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
}
# Per-turn training flags some ShareGPT exports carry (axolotl writes `weight`).
_TURN_FLAGS = ("loss", "weight")
_PREFERENCE_KEYS = ("chosen", "rejected", "response_chosen", "response_rejected")


def detect_chat_format(record: Any) -> str:
    """Which instruction-data format a record is in.

    Args:
        record: one parsed JSON record.

    Returns:
        "openai" (`messages`), "sharegpt" (`conversations`), "xtuner" (`conversation`) or "alpaca"
        (`instruction` / `output`). A `messages` or `conversations` list is ShareGPT when its turns
        use `from`/`value` and OpenAI when they use `role`/`content`.

    Raises:
        PuyuError: "not an object", "wrong kind" (a preference pair), "unknown format".
    """
    record = _as_object(record)
    if any(key in record for key in _PREFERENCE_KEYS):
        raise record_error("wrong kind", "a preference pair (it has chosen/rejected); convert it as preference data")
    for key in ("messages", "conversations"):
        if key in record:
            return turns_format(record[key], default="openai" if key == "messages" else "sharegpt")
    if "conversation" in record:
        return "xtuner"
    if "instruction" in record or "output" in record:
        return "alpaca"
    raise record_error(
        "unknown format",
        f"keys {describe_keys(record)} match no chat format "
        "(expected messages, conversations, conversation or instruction)",
    )


def normalize_chat_record(record: Any, *, format: str | None = None) -> dict[str, Any]:
    """Convert one instruction-data record to the chat format and check it is fit to train on.

    Args:
        record: one parsed JSON record in any of `CHAT_FORMATS`.
        format: force a format instead of detecting it.

    Returns:
        `{"messages": [...], "tools"?: [...], "id"?: str, "source"?: str}`.

    Raises:
        PuyuError: the reason the record cannot be used, starting with a short kind (e.g.
            "no assistant turn", "invalid message: message 2: unknown role 'bot' ...").
    """
    name = check_format(format, CHAT_FORMATS, "chat") or detect_chat_format(record)
    return _CONVERTERS[name](_as_object(record))


def check_format(format: str | None, known: tuple[str, ...], kind: str) -> str | None:
    """`format` itself when it is one of `known` (or None); a `PuyuError` otherwise."""
    if format is not None and format not in known:
        raise PuyuError(f"unknown {kind} format {format!r} (expected one of {', '.join(known)})")
    return format


def _from_turns(record: dict[str, Any], preferred_key: str) -> dict[str, Any]:
    # Either key may hold either turn shape; `turns_to_messages` reads each turn by its own keys.
    other = "conversations" if preferred_key == "messages" else "messages"
    key = preferred_key if preferred_key in record or other not in record else other
    return finish(record, with_system(record, turns_to_messages(require(record, key), key)))


def _from_alpaca(record: dict[str, Any]) -> dict[str, Any]:
    output = require(record, "output")
    if not isinstance(output, str):
        raise record_error("invalid field", f"'output' must be a string, got {type(output).__name__}")
    return finish(record, [*alpaca_prompt(record), {"role": "assistant", "content": output}])


def _from_xtuner(record: dict[str, Any]) -> dict[str, Any]:
    exchanges = require(record, "conversation")
    if not isinstance(exchanges, list):
        raise record_error("invalid field", f"'conversation' must be a list, got {type(exchanges).__name__}")
    messages: list[dict[str, Any]] = []
    for index, exchange in enumerate(exchanges):
        where = f"conversation[{index}]"
        if not isinstance(exchange, Mapping):
            raise record_error("invalid field", f"{where} must be an object, got {type(exchange).__name__}")
        system = _optional_str(exchange, "system", where)
        if system and index > 0:
            # XTuner renders only the first exchange's system; dropping a later one silently would lose text.
            raise record_error("invalid field", f"{where}: only the first exchange may carry a system prompt")
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": _required_str(exchange, "input", where)})
        reply: dict[str, Any] = {"role": "assistant", "content": _required_str(exchange, "output", where)}
        with_loss = exchange.get("output_with_loss", True)
        if not isinstance(with_loss, bool):
            raise record_error("invalid field", f"{where}: output_with_loss must be true or false")
        if not with_loss:
            reply["loss"] = False
        messages.append(reply)
    return finish(record, messages)


_CONVERTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "openai": lambda record: _from_turns(record, "messages"),
    "sharegpt": lambda record: _from_turns(record, "conversations"),
    "alpaca": _from_alpaca,
    "xtuner": _from_xtuner,
}


# ---------------------------------------------------------------- shared with the preference formats


def finish(record: Mapping[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Clean and check a supervised conversation and add the record's tools, id and source."""
    cleaned = clean_messages(messages)
    check_sft(cleaned)
    return {"messages": cleaned, **record_extras(record)}


def record_extras(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record's `tools` (OpenAI shape), `id` (as a string) and `source`, those that are set."""
    out: dict[str, Any] = {}
    tools = clean_tools(record.get("tools"))
    if tools:
        out["tools"] = tools
    record_id = record.get("id")
    if record_id is not None:
        if isinstance(record_id, bool) or not isinstance(record_id, (str, int)):
            raise record_error("invalid field", f"'id' must be a string or an integer, got {type(record_id).__name__}")
        out["id"] = str(record_id)
    source = record.get("source")
    if source is not None:
        if not isinstance(source, str):
            raise record_error("invalid field", f"'source' must be a string, got {type(source).__name__}")
        out["source"] = source
    return out


def turns_format(turns: Any, default: str) -> str:
    """ "sharegpt" when the first turn uses `from`/`value`, "openai" when it uses `role`, else `default`."""
    if isinstance(turns, list) and turns and isinstance(turns[0], Mapping):
        if "from" in turns[0]:
            return "sharegpt"
        if "role" in turns[0]:
            return "openai"
    return default


def turns_to_messages(turns: Any, key: str) -> list[dict[str, Any]]:
    """A list of ShareGPT turns (`from`/`value`) or OpenAI messages (`role`/`content`) as messages.

    ShareGPT `function_call` turns (JSON `{"name", "arguments"}` or a list of them) become
    `tool_calls`, joined onto the assistant turn right before them when there is one (a reply that
    says something and then calls a tool is one turn); `observation` turns become tool messages.
    OpenAI messages are copied as they are; `clean_messages` checks them.
    """
    if not isinstance(turns, list):
        raise record_error("invalid field", f"{key!r} must be a list, got {type(turns).__name__}")
    messages: list[dict[str, Any]] = []
    for index, turn in enumerate(turns):
        if not isinstance(turn, Mapping) or "from" not in turn:
            messages.append(dict(turn) if isinstance(turn, Mapping) else turn)
            continue
        tag, value = turn["from"], turn.get("value")
        role = SHAREGPT_ROLES.get(tag) if isinstance(tag, str) else None
        if role is None:
            expected = ", ".join(SHAREGPT_ROLES)
            raise record_error("invalid message", f"turn {index}: unknown role {tag!r} (expected one of {expected})")
        if not isinstance(value, str):
            raise record_error("invalid message", f"turn {index}: 'value' must be a string, got {type(value).__name__}")
        flags = {flag: turn[flag] for flag in _TURN_FLAGS if flag in turn}
        if tag != "function_call":
            messages.append({"role": role, "content": value, **flags})
            continue
        calls = _function_calls(index, value)
        previous = messages[-1] if messages else None
        if isinstance(previous, dict) and previous.get("role") == "assistant":
            previous["tool_calls"] = [*(previous.get("tool_calls") or []), *calls]
            previous.update(flags)
        else:
            messages.append({"role": "assistant", "content": "", "tool_calls": calls, **flags})
    return messages


def _function_calls(index: int, value: str) -> list[dict[str, Any]]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise record_error("invalid message", f"turn {index}: function_call is not valid JSON ({exc.msg})") from None
    calls = parsed if isinstance(parsed, list) else [parsed]
    out = []
    for call in calls:
        if not isinstance(call, Mapping):
            raise record_error(
                "invalid message", f"turn {index}: function_call must be a JSON object with name and arguments"
            )
        out.append({"type": "function", "function": {"name": call.get("name"), "arguments": call.get("arguments")}})
    return out


def with_system(record: Mapping[str, Any], messages: list[Any]) -> list[Any]:
    """`messages` with the record's top-level `system` prompt put first (unless they open with the same one)."""
    system = _optional_str(record, "system")
    if not system:
        return messages
    first = messages[0] if messages else None
    if isinstance(first, Mapping) and first.get("role") == "system":
        if first.get("content") != system:
            raise record_error("invalid field", "'system' differs from the system turn the conversation starts with")
        return messages
    return [{"role": "system", "content": system}, *messages]


def alpaca_prompt(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An Alpaca record's system, history and instruction (+ input) as messages, without the output."""
    messages: list[dict[str, Any]] = []
    system = _optional_str(record, "system")
    if system:
        messages.append({"role": "system", "content": system})
    history = record.get("history") or []
    if not isinstance(history, list):
        raise record_error(
            "invalid field", f"'history' must be a list of [question, answer] pairs, got {type(history).__name__}"
        )
    for index, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(text, str) for text in pair)):
            raise record_error("invalid field", f"history[{index}] must be a [question, answer] pair of strings")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    parts = [_optional_str(record, "instruction"), _optional_str(record, "input")]
    query = ALPACA_INPUT_SEPARATOR.join(part for part in parts if part)
    if not query:
        raise record_error("missing field", "'instruction' and 'input' are both empty")
    messages.append({"role": "user", "content": query})
    return messages


def describe_keys(record: Mapping[str, Any], shown: int = 8) -> str:
    """A record's keys for an error message, the first few in sorted order."""
    keys = sorted(map(str, record))
    more = f", ... ({len(keys) - shown} more)" if len(keys) > shown else ""
    return (", ".join(keys[:shown]) or "none") + more


def require(record: Mapping[str, Any], key: str) -> Any:
    """`record[key]`; "missing field" when it is absent or null."""
    value = record.get(key)
    if value is None:
        raise record_error("missing field", repr(key))
    return value


def _required_str(record: Mapping[str, Any], key: str, where: str | None = None) -> str:
    value = record.get(key)
    if value is None:
        raise record_error("missing field", f"{where}: {key!r}" if where else repr(key))
    if not isinstance(value, str):
        raise record_error(
            "invalid field", f"{where + ': ' if where else ''}{key!r} must be a string, got {type(value).__name__}"
        )
    return value


def _optional_str(record: Mapping[str, Any], key: str, where: str | None = None) -> str:
    return "" if record.get(key) is None else _required_str(record, key, where)


def _as_object(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise record_error("not an object", f"expected a JSON object, got {type(record).__name__}")
    return record
