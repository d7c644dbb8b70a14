"""Tool-use evaluation with a scripted model: call and answer scoring, argument normalisation, agentic GSM8K."""

from __future__ import annotations

import json

import pytest

from puyu.agent.scripted import ScriptedModel
from puyu.client import ChatResult, ToolCall
from puyu.errors import PuyuError
from puyu.eval.tool_use import (
    answer_matches,
    calls_match,
    evaluate_gsm8k_agent,
    evaluate_tool_calls,
    load_tool_call_samples,
    normalize_value,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_argument_normalisation():
    assert normalize_value({"expression": "12*7", "n": "3"}) == normalize_value({"n": 3.0, "expression": " 12 * 7 "})
    assert normalize_value({"city": "Paris"}) == normalize_value({"city": "paris"})
    assert normalize_value({"city": "Paris"}) != normalize_value({"city": "Lyon"})
    assert calls_match([ToolCall("a", {"x": 1})], [{"name": "a", "arguments": {"x": "1"}}]) == (True, True)
    assert calls_match([ToolCall("a", {"x": 2})], [{"name": "a", "arguments": {"x": 1}}]) == (True, False)
    assert calls_match([ToolCall("b", {})], [{"name": "a", "arguments": {}}]) == (False, False)
    assert answer_matches("The answer is 1,234.", "1234") and not answer_matches("about 12", "1234")


def test_tool_call_scoring(tmp_path):
    path = _write(
        tmp_path / "calls.jsonl",
        [
            {"id": "a", "query": "12*7?", "tools": ["calculator"], "results": ["84"], "answer": "84",
             "calls": [{"name": "calculator", "arguments": {"expression": "12 * 7"}}]},
            {"id": "b", "query": "Weather in Paris?", "tools": [WEATHER],
             "calls": [{"name": "weather", "arguments": {"city": "Paris"}}]},
        ],
    )  # fmt: skip
    samples = load_tool_call_samples(path)
    model = ScriptedModel(
        [
            ChatResult("", [ToolCall("calculator", {"expression": "12*7"})]),
            ChatResult("It is 84."),
            ChatResult("", [ToolCall("weather", {"city": "Lyon"})]),
        ]
    )
    metrics, records = evaluate_tool_calls(model, samples, protocol="openai")
    assert metrics == {
        "samples": 2.0,
        "name_accuracy": 1.0,
        "call_accuracy": 0.5,
        "parse_error_rate": 0.0,
        "answer_accuracy": 1.0,
    }
    assert [r["call_correct"] for r in records] == [True, False]
    # The answer turn saw the canned result, and no tools.
    assert model.requests[1]["tools"] is None
    assert model.requests[1]["messages"][-2]["content"] == "84"


@pytest.mark.parametrize(
    "line",
    ['{"query": "x"}', "not json", '{"query": "x", "tools": ["rm"], "calls": []}',
     '{"query": "x", "tools": ["calculator"], "calls": [{"name": "calculator"}], "results": []}'],
)  # fmt: skip
def test_malformed_samples_name_the_line(tmp_path, line):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(PuyuError, match=r"bad\.jsonl:1"):
        load_tool_call_samples(path)


def test_gsm8k_agent_uses_the_interpreter(tmp_path):
    model = ScriptedModel(
        [
            ChatResult("", [ToolCall("python", {"code": "3 * 4 + 2"})]),
            ChatResult("The answer is 14."),
            ChatResult("The answer is 5."),
        ]
    )
    metrics, records = evaluate_gsm8k_agent(
        model, [("3 boxes of 4, plus 2?", "14"), ("2+2?", "4")], tmp_path, protocol="openai"
    )
    assert metrics == {"samples": 2.0, "accuracy": 0.5, "interpreter_use": 0.5}
    assert records[0]["tool_calls"] == 1 and records[0]["correct"]
