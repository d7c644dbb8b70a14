"""Preference pairs (for DPO and reward models) in their common shapes, to one format.

Output: `{"prompt": [messages], "chosen": [assistant message(s)], "rejected": [assistant message(s)],
"tools"?: [...], "id"?: str, "source"?: str}`. The prompt ends with a user (or tool) turn; each
response is one assistant turn, or several with tool calls and results between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from puyu.data.conversations.chat import (
    alpaca_prompt,
    check_format,
    describe_keys,
    record_extras,
    require,
    turns_format,
    turns_to_messages,
    with_system,
)
from puyu.data.conversations.checks import clean_messages, record_error

PREFERENCE_FORMATS = ("prompt", "question", "alpaca", "sharegpt", "openai", "implicit")

# (output key, the input keys it may come under)
_RESPONSE_KEYS = {"chosen": ("chosen", "response_chosen"), "rejected": ("rejected", "response_rejected")}
_CHAT_KEYS = ("messages", "conversations", "conversation", "instruction", "output")


def detect_preference_format(record: Any) -> str:
    """Which preference-data shape a record is in.

    Args:
        record: one parsed JSON record.

    Returns:
        "prompt" (`prompt` + `chosen` + `rejected`, as TRL and HuggingFaceH4's sets write them),
        "question" (`question` + `response_chosen` + `response_rejected`), "alpaca" (`instruction`
        / `input` + `chosen` + `rejected`, as LLaMA-Factory's ranking sets), "sharegpt" or "openai"
        (a `conversations` / `messages` context + `chosen` + `rejected`), or "implicit" (only
        `chosen` and `rejected`, each a whole conversation whose shared start is the prompt).

    Raises:
        PuyuError: "not an object", "wrong kind" (a chat record), "unknown format".
    """
    if not isinstance(record, dict):
        raise record_error("not an object", f"expected a JSON object, got {type(record).__name__}")
    has_response = any(key in record for keys in _RESPONSE_KEYS.values() for key in keys)
    if not has_response and any(key in record for key in _CHAT_KEYS):
        raise record_error("wrong kind", "a chat record (no chosen/rejected); convert it as chat data")
    if "prompt" in record:
        return "prompt"
    if "question" in record:
        return "question"
    for key in ("conversations", "messages"):
        if key in record:
            return turns_format(record[key], default="sharegpt" if key == "conversations" else "openai")
    if "instruction" in record:
        return "alpaca"
    if has_response:
        return "implicit"
    raise record_error(
        "unknown format", f"keys {describe_keys(record)} match no preference format (expected prompt, chosen, rejected)"
    )


def normalize_preference_record(record: Any, *, format: str | None = None) -> dict[str, Any]:
    """Convert one preference record to `{"prompt", "chosen", "rejected", ...}` and check it.

    A response given as a string becomes one assistant message; one given as a message (OpenAI or
    ShareGPT shape) or a list of them is kept. When the responses are whole conversations (they
    contain user turns), their shared start up to the last user or tool turn is the prompt; a
    `prompt` given as well must be the end of that shared start (HuggingFaceH4/ultrafeedback_binarized
    repeats the last user message there).

    Args:
        record: one parsed JSON record in any of `PREFERENCE_FORMATS`.
        format: force a format instead of detecting it.

    Raises:
        PuyuError: the reason, starting with a short kind: "missing field: 'rejected'", "empty
            prompt", "invalid prompt", "invalid response", "identical responses", "invalid message", ...
    """
    name = check_format(format, PREFERENCE_FORMATS, "preference") or detect_preference_format(record)
    context = _context(record, name)
    chosen, rejected = _response(record, "chosen"), _response(record, "rejected")
    if chosen == rejected:
        raise record_error("identical responses", "chosen and rejected are the same")

    carried: list[Any] = []
    if any(not _is_reply(message) for message in chosen + rejected):
        carried, chosen, rejected = _split_shared_start(chosen, rejected)
    prompt = clean_messages(context, "prompt") if context else []
    if carried:
        shared = clean_messages(carried, "prompt")
        if prompt and shared[-len(prompt) :] != prompt:
            raise record_error(
                "invalid prompt", "the prompt differs from the conversation chosen and rejected start with"
            )
        prompt = shared
    prompt = with_system(record, prompt)
    if not prompt:
        raise record_error("empty prompt")
    if prompt[-1]["role"] not in ("user", "tool"):
        raise record_error("invalid prompt", f"it ends with a {prompt[-1]['role']!r} turn, not a user turn")
    out = {
        "prompt": prompt,
        "chosen": _check_reply("chosen", chosen),
        "rejected": _check_reply("rejected", rejected),
    }
    return {**out, **record_extras(record)}


def _context(record: dict[str, Any], name: str) -> list[Any]:
    if name == "alpaca":
        return alpaca_prompt(record)
    if name in ("sharegpt", "openai"):
        preferred = "conversations" if name == "sharegpt" else "messages"
        other = "messages" if name == "sharegpt" else "conversations"
        key = preferred if preferred in record or other not in record else other
        return turns_to_messages(require(record, key), key)
    if name == "implicit":
        return []
    prompt = require(record, name)  # "prompt" or "question"
    if isinstance(prompt, str):
        if not prompt.strip():
            raise record_error("empty prompt")
        return [{"role": "user", "content": prompt}]
    if name == "prompt" and isinstance(prompt, list):
        return turns_to_messages(prompt, name)
    raise record_error("invalid field", f"{name!r} must be a string or a list of messages, got {type(prompt).__name__}")


def _response(record: Mapping[str, Any], which: str) -> list[Any]:
    key = next((key for key in _RESPONSE_KEYS[which] if record.get(key) is not None), None)
    if key is None:
        raise record_error("missing field", repr(which))
    value = record[key]
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    if isinstance(value, Mapping):
        return turns_to_messages([value], key)
    if isinstance(value, list):
        return turns_to_messages(value, key)
    raise record_error(
        "invalid field", f"{key!r} must be a string, a message or a list of messages, got {type(value).__name__}"
    )


def _is_reply(message: Any) -> bool:
    return isinstance(message, Mapping) and message.get("role") in ("assistant", "tool")


def _split_shared_start(chosen: list[Any], rejected: list[Any]) -> tuple[list[Any], list[Any], list[Any]]:
    """Cut two whole conversations after the last user (or system/tool) turn of their shared start."""
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    # Shared assistant turns right before the difference stay in the responses: a prompt ends with a user turn.
    cut = next((index + 1 for index in range(shared - 1, -1, -1) if not _is_reply(chosen[index])), 0)
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _check_reply(which: str, messages: list[Any]) -> list[dict[str, Any]]:
    if not messages:
        raise record_error("invalid response", f"{which!r} has no reply after the prompt")
    for message in messages:
        if not _is_reply(message):
            role = message.get("role") if isinstance(message, Mapping) else None
            raise record_error("invalid response", f"{which!r} must hold assistant turns only, got a {role!r} turn")
    if messages[0]["role"] != "assistant" or messages[-1]["role"] != "assistant":
        raise record_error("invalid response", f"{which!r} must start and end with an assistant turn")
    return clean_messages(messages, which)
