"""Reading tool calls back out of generated assistant text, one parser per template family.

Every parser returns the assistant content with the call markup removed and an OpenAI-style
`tool_calls` list whose `function.arguments` is a JSON string. A call whose JSON does not parse is
left in the content untouched, so nothing the model wrote is lost.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any

# The call name given to InternLM2's code-interpreter actions (`<|action_start|><|interpreter|>`),
# whose body is code rather than JSON; the code goes in `arguments` as {"code": ...}.
INTERPRETER_TOOL_NAME = "python"
# Llama 3.1's name for raw `<|python_tag|>` code, as in its `builtin_tools`.
LLAMA_CODE_TOOL_NAME = "code_interpreter"

_INTERNLM2_ACTION = re.compile(
    r"<\|action_start\|>\s*<\|(plugin|interpreter)\|>(.*?)(?:<\|action_end\|>|\Z)", re.DOTALL
)
_QWEN2_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)
_CODE_FENCE = re.compile(r"\A\s*```[\w+-]*\n(.*?)\n?```\s*\Z", re.DOTALL)
_LLAMA_BUILTIN_CALL = re.compile(r"\A(\w+)\.call\((.*)\)\Z", re.DOTALL)
_LLAMA_CALL_ARG = re.compile(r'\s*(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|\Z)', re.DOTALL)
_PYTHON_TAG = "<|python_tag|>"


def make_tool_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-style tool call with a fresh id and JSON-string arguments."""
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
    }


def _call_from_json(body: str) -> dict[str, Any] | None:
    """`{"name": ..., "parameters" | "arguments": {...}}` -> a tool call, or None if malformed."""
    try:
        obj = json.loads(body)
    except json.JSONDecodeError:
        return None
    return _call_from_object(obj)


def _call_from_object(obj: Any) -> dict[str, Any] | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        # Some models write the arguments as a JSON string, as the OpenAI API does.
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return make_tool_call(obj["name"], arguments)


ParsedReply = tuple[str, list[dict[str, Any]]]


def _strip_calls(
    text: str, pattern: re.Pattern[str], read: Callable[[re.Match[str]], dict[str, Any] | None]
) -> ParsedReply:
    """Remove every match of `pattern` that `read` turns into a call; keep the rest as content."""
    calls: list[dict[str, Any]] = []
    kept: list[str] = []
    last = 0
    for match in pattern.finditer(text):
        call = read(match)
        if call is None:
            continue
        kept.append(text[last : match.start()])
        calls.append(call)
        last = match.end()
    if not calls:
        return text, []
    kept.append(text[last:])
    return "".join(kept).strip(), calls


def parse_internlm2(text: str) -> ParsedReply:
    """InternLM2 / Lagent: `<|action_start|><|plugin|>\\n{json}<|action_end|>` per call.

    Code-interpreter actions (`<|interpreter|>`, a fenced code block) become a call named
    `INTERPRETER_TOOL_NAME` with arguments `{"code": ...}`.
    """

    def read(match: re.Match[str]) -> dict[str, Any] | None:
        kind, body = match.group(1), match.group(2).strip()
        if kind == "plugin":
            return _call_from_json(body)
        fenced = _CODE_FENCE.match(body)
        code = fenced.group(1) if fenced else body
        return make_tool_call(INTERPRETER_TOOL_NAME, {"code": code}) if code.strip() else None

    return _strip_calls(text, _INTERNLM2_ACTION, read)


def parse_qwen2(text: str) -> ParsedReply:
    """Qwen2.5 / Hermes: `<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>` per call."""
    return _strip_calls(text, _QWEN2_CALL, lambda match: _call_from_json(match.group(1).strip()))


def parse_llama3(text: str) -> ParsedReply:
    """Llama 3.1: the whole reply is the call.

    Accepted forms: `{"name": ..., "parameters": {...}}` (several may be separated by `;`),
    optionally after `<|python_tag|>`; a built-in tool call `<|python_tag|>name.call(k="v", ...)`;
    and raw `<|python_tag|>` code, which becomes a `code_interpreter` call with `{"code": ...}`.
    """
    body = text.strip()
    tagged = body.startswith(_PYTHON_TAG)
    if tagged:
        body = body[len(_PYTHON_TAG) :].strip()
    if body.startswith("{"):
        calls = _json_call_sequence(body)
        return ("", calls) if calls else (text, [])
    if not tagged or not body:
        return text, []
    builtin = _LLAMA_BUILTIN_CALL.match(body)
    if builtin:
        arguments = _llama_call_arguments(builtin.group(2))
        if arguments is not None:
            return "", [make_tool_call(builtin.group(1), arguments)]
    return "", [make_tool_call(LLAMA_CODE_TOOL_NAME, {"code": body})]


def _json_call_sequence(body: str) -> list[dict[str, Any]]:
    """One or more JSON call objects making up all of `body`, or [] if anything else is there."""
    decoder = json.JSONDecoder()
    calls = []
    pos = 0
    while pos < len(body):
        try:
            obj, end = decoder.raw_decode(body, pos)
        except json.JSONDecodeError:
            return []
        call = _call_from_object(obj)
        if call is None:
            return []
        calls.append(call)
        pos = end
        while pos < len(body) and (body[pos].isspace() or body[pos] == ";"):
            pos += 1
    return calls


def _llama_call_arguments(text: str) -> dict[str, Any] | None:
    """`k="v", k2="v2"` -> {"k": "v", "k2": "v2"}; values stay as written (the template escapes nothing)."""
    arguments: dict[str, Any] = {}
    if not text.strip():
        return arguments
    pos = 0
    while True:
        match = _LLAMA_CALL_ARG.match(text, pos)
        if match is None:
            return None
        key, value, separator = match.groups()
        arguments[key] = value
        pos = match.end()
        if not separator:
            return arguments


PARSERS: dict[str, Callable[[str], ParsedReply]] = {
    "internlm2": parse_internlm2,
    "llama3": parse_llama3,
    "qwen2": parse_qwen2,
}


def strip_stop_string(text: str, stop_strings: Sequence[str]) -> str:
    """`text` without one trailing end-of-turn marker (and the whitespace around it)."""
    trimmed = text.rstrip()
    for stop in stop_strings:
        if stop and trimmed.endswith(stop):
            return trimmed[: -len(stop)]
    return text


def guess_tool_format(source: str, family_hint: str | None) -> str | None:
    """Which tool-call syntax a template writes: markers in its source first, then the family."""
    if "<|action_start|>" in source or "<|plugin|>" in source:
        return "internlm2"
    if "<tool_call>" in source:
        return "qwen2"
    if "<|start_header_id|>" in source or "<|python_tag|>" in source:
        return "llama3"
    hint = (family_hint or "").lower()
    if hint.startswith("internlm"):
        return "internlm2"
    if hint.startswith("llama"):
        return "llama3"
    if hint.startswith("qwen"):
        return "qwen2"
    return None
