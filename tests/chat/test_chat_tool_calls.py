"""Reading tool calls back out of generated text."""

from __future__ import annotations

import json

import pytest
from chat_support import CONVERSATIONS, TOOLS

from puyu.chat import BUILTINS, ChatTemplate


def _assistant_texts(template, messages, tools, **extra):
    rendered = template.render(messages, tools=tools, **extra)
    return [rendered.text[a:b] for a, b in rendered.assistant_spans]


def _plain_calls(calls):
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]


@pytest.mark.parametrize("name", list(BUILTINS))
@pytest.mark.parametrize("conversation", ["tools", "tools_no_content", "parallel_calls"])
def test_round_trip(name, conversation):
    messages, tools = CONVERSATIONS[conversation]
    if name == "llama3" and conversation == "parallel_calls":
        pytest.skip("Llama 3.1 takes one call per turn")
    template = ChatTemplate.builtin(name)
    texts = _assistant_texts(template, messages, tools)
    assistants = [m for m in messages if m["role"] == "assistant"]
    assert len(texts) == len(assistants)
    for text, message in zip(texts, assistants, strict=True):
        content, calls = template.parse_tool_calls(text)
        want = [(c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls", [])]
        assert _plain_calls(calls) == want
        for call in calls:
            assert call["type"] == "function" and call["id"].startswith("call_")
            assert isinstance(call["function"]["arguments"], str)
        if name != "llama3" or not want:  # Llama 3.1 drops the content of a tool-call turn
            assert content == (message.get("content") or "")


def test_ids_are_unique():
    template = ChatTemplate.builtin("qwen2")
    call = '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>'
    text = f"{call}\n{call}"
    _, calls = template.parse_tool_calls(text)
    assert len({c["id"] for c in calls}) == 2


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "internlm2",
            "Sure.<|action_start|><|plugin|>\n"
            '{"name": "get_weather", "parameters": {"location": }<|action_end|><|im_end|>',
        ),
        (
            "qwen2",
            'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"location": "Paris"</tool_call><|im_end|>',
        ),
        ("llama3", '{"name": "get_weather", "parameters": {"location": "Paris"}<|eot_id|>'),
    ],
)
def test_malformed_json_stays_content(name, text):
    template = ChatTemplate.builtin(name)
    content, calls = template.parse_tool_calls(text)
    assert calls == []
    assert content == text[: text.rindex("<|")]


def test_mixed_good_and_bad_calls():
    template = ChatTemplate.builtin("qwen2")
    bad = "<tool_call>\nnot json\n</tool_call>"
    good = '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>'
    content, calls = template.parse_tool_calls(f"Hi.\n{bad}\n{good}")
    assert _plain_calls(calls) == [("f", {"x": 1})]
    assert content == f"Hi.\n{bad}"


def test_text_without_calls_is_left_alone():
    for name in BUILTINS:
        template = ChatTemplate.builtin(name)
        assert template.parse_tool_calls("  Just words. {not a call}  ") == ("  Just words. {not a call}  ", [])
        assert template.parse_tool_calls("Done." + template.stop_strings[0]) == ("Done.", [])


def test_internlm2_unterminated_action_and_interpreter():
    template = ChatTemplate.builtin("internlm2")
    content, calls = template.parse_tool_calls(
        'Checking<|action_start|><|plugin|>\n{"name": "f", "arguments": "{\\"a\\": 2}"}'
    )
    assert content == "Checking" and _plain_calls(calls) == [("f", {"a": 2})]
    text = "Let me compute.\n<|action_start|><|interpreter|>\n```python\nprint(1 + 1)\n```<|action_end|>\n"
    content, calls = template.parse_tool_calls(text)
    assert content == "Let me compute."
    assert _plain_calls(calls) == [("python", {"code": "print(1 + 1)"})]


def test_llama3_forms():
    template = ChatTemplate.builtin("llama3")
    content, calls = template.parse_tool_calls(
        '<|python_tag|>{"name": "f", "parameters": {"a": 1}}; {"name": "g", "arguments": {}}'
    )
    assert content == "" and _plain_calls(calls) == [("f", {"a": 1}), ("g", {})]
    content, calls = template.parse_tool_calls(
        '<|python_tag|>brave_search.call(query="weather in SF", n="3")<|eom_id|>'
    )
    assert _plain_calls(calls) == [("brave_search", {"query": "weather in SF", "n": "3"})]
    content, calls = template.parse_tool_calls("<|python_tag|>import math\nprint(math.pi)")
    assert _plain_calls(calls) == [("code_interpreter", {"code": "import math\nprint(math.pi)"})]
    # A JSON answer that is not a call is just content.
    assert template.parse_tool_calls('{"answer": 4}') == ('{"answer": 4}', [])


def test_llama3_builtin_tool_round_trip():
    template = ChatTemplate.builtin("llama3")
    messages = [
        {"role": "user", "content": "Search it"},
        {
            "role": "assistant",
            "tool_calls": [{"type": "function", "function": {"name": "brave_search", "arguments": {"query": "x y"}}}],
        },
    ]
    (text,) = _assistant_texts(template, messages, None, builtin_tools=["brave_search"])
    assert text == '<|python_tag|>brave_search.call(query="x y")<|eom_id|>'
    assert _plain_calls(template.parse_tool_calls(text)[1]) == [("brave_search", {"query": "x y"})]


def test_custom_template_without_known_format_parses_nothing():
    template = ChatTemplate.from_source("{% for m in messages %}{{ m.content }}{% endfor %}")
    assert template.parse_tool_calls('<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>')[1] == []


def test_tools_list_is_used_by_every_builtin():
    for name in BUILTINS:
        text = ChatTemplate.builtin(name).render([{"role": "user", "content": "hi"}], tools=TOOLS).text
        assert "get_time" in text and "get_weather" in text
