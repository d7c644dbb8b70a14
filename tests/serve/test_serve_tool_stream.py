"""Streamed tool-call splitting against the non-streamed parse, fed one character at a time."""

from __future__ import annotations

import json

import pytest

from puyu.chat import ChatTemplate
from puyu.chat.tool_stream import ToolCallStream

CASES = {
    "internlm2": 'Sure.<|action_start|><|plugin|>\n{"name": "f", "parameters": {"x": 1}}<|action_end|>',
    "qwen2": 'Sure.\n<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>',
    "llama3": '{"name": "f", "parameters": {"x": 1}}',
}


@pytest.mark.parametrize("family", sorted(CASES))
def test_calls_are_held_back_and_parsed(family: str) -> None:
    template = ChatTemplate.builtin(family)
    stream = ToolCallStream(template)
    shown = "".join(stream.feed(char) for char in CASES[family])
    rest, calls = stream.finish()
    content, expected = template.parse_tool_calls(CASES[family])
    assert (shown + rest).strip() == content
    assert "<" not in shown and "{" not in shown
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        (c["function"]["name"], json.loads(c["function"]["arguments"])) for c in expected
    ]


@pytest.mark.parametrize("family", sorted(CASES))
def test_plain_text_streams_through(family: str) -> None:
    template = ChatTemplate.builtin(family)
    stream = ToolCallStream(template)
    text = "No tools needed: 2 < 3 and {braces} are fine here."
    shown = "".join(stream.feed(char) for char in text)
    rest, calls = stream.finish()
    assert shown + rest == text and calls == []
    # nothing is held back longer than a marker's length
    assert len(rest) < len("<|action_start|>")


def test_broken_call_comes_back_as_content() -> None:
    template = ChatTemplate.builtin("internlm2")
    stream = ToolCallStream(template)
    text = "Hm.<|action_start|><|plugin|>\n{not json<|action_end|>"
    shown = "".join(stream.feed(char) for char in text)
    rest, calls = stream.finish()
    assert calls == [] and shown + rest == text
