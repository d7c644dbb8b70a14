"""Tool calling through the real `openai` client: the model is made to write InternLM2 tool-call
markup (a logits processor forces the tokens), and the server must return parsed `tool_calls`,
streamed and not, then answer once the tool result comes back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from serve_support import MODEL_NAME, engine_factory, live_server

from puyu.serve.app import create_app

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]
CALL = '<|action_start|><|plugin|>\n{"name": "get_weather", "parameters": {"city": "Paris"}}<|action_end|>'
PREFACE = "Let me check."
ANSWER = "It is 21 degrees in Paris."
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


def script(prompt: str) -> str | None:
    """The model's reply: a tool call when tools are offered, the answer once the result is back."""
    if "<|im_start|>environment" in prompt:
        return ANSWER
    if "<|plugin|>\n[" in prompt:
        return PREFACE + CALL
    return None


@pytest.fixture(scope="module")
def client(model_folder: Path) -> Iterator[openai.OpenAI]:
    engine = engine_factory(model_folder, script=script)()
    with live_server(create_app(engine, model_name=MODEL_NAME)) as url:
        yield openai.OpenAI(base_url=url, api_key="x", max_retries=0)


def test_tool_call_round_trip(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL_NAME, messages=QUESTION, tools=TOOLS, max_tokens=200)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == PREFACE
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    history = [*QUESTION, choice.message.model_dump(exclude_none=True)]
    history.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"celsius": 21})})
    answer = client.chat.completions.create(model=MODEL_NAME, messages=history, tools=TOOLS, max_tokens=200)
    assert answer.choices[0].message.content == ANSWER
    assert answer.choices[0].message.tool_calls is None
    assert answer.choices[0].finish_reason == "stop"


def test_tool_call_streamed(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL_NAME, messages=QUESTION, tools=TOOLS, tool_choice="auto", max_tokens=200, stream=True
    )
    content, calls, finishes = "", {}, []
    for chunk in stream:
        for choice in chunk.choices:
            content += choice.delta.content or ""
            # no markup ever reaches the content
            assert "<|" not in (choice.delta.content or "")
            for delta in choice.delta.tool_calls or []:
                entry = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                entry["id"] = entry["id"] or delta.id
                entry["name"] += delta.function.name or ""
                entry["arguments"] += delta.function.arguments or ""
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    assert content == PREFACE
    assert finishes == ["tool_calls"]
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather" and calls[0]["id"].startswith("call_")
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}


def test_named_tool_choice_renders_only_that_tool(client: openai.OpenAI) -> None:
    choice = {"type": "function", "function": {"name": "get_weather"}}
    reply = client.chat.completions.create(
        model=MODEL_NAME, messages=QUESTION, tools=TOOLS, tool_choice=choice, max_tokens=200
    )
    assert reply.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_tool_choice_none_renders_no_tools(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL_NAME, messages=QUESTION, tools=TOOLS, tool_choice="none", max_tokens=8, temperature=0
    )
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].finish_reason in ("stop", "length")
