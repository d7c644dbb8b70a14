"""User mistakes come back as one-line PuyuErrors that say where the problem is."""

from __future__ import annotations

import pytest

from puyu.chat import ChatTemplate
from puyu.errors import PuyuError


@pytest.fixture(scope="module")
def template():
    return ChatTemplate.builtin("qwen2")


def _call(arguments):
    return {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        (
            [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "bot", "content": "c"}],
            "message 2: unknown role 'bot' (expected one of system, user, assistant, tool)",
        ),
        ([{"content": "a"}], "message 0: missing 'role'"),
        ([{"role": "user"}], "message 0: missing 'content'"),
        ([{"role": "user", "content": None}], "message 0: missing 'content'"),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": None}], "message 1: missing 'content'"),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": []}], "message 1: missing 'content'"),
        ([{"role": "tool"}], "message 0: missing 'content'"),
        ([{"role": "user", "content": 3}], "message 0: content must be a string or a list of text parts, got int"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            "message 0: content part 0 has type 'image_url'",
        ),
        (["hello"], "message 0: expected a dict"),
        ([], "messages is empty"),
        ("hello", "messages must be a list"),
        (
            [{"role": "user", "content": "q", "tool_calls": [_call({})]}],
            "message 0: only assistant messages can carry tool_calls",
        ),
        (
            [{"role": "assistant", "tool_calls": [_call("{bad")]}],
            "message 0: tool call 0 (f): arguments are not valid JSON",
        ),
        (
            [{"role": "assistant", "tool_calls": [{"function": {"arguments": {}}}]}],
            "message 0: tool call 0 has no function name",
        ),
        ([{"role": "assistant", "tool_calls": [_call(None)]}], "message 0: tool call 0 (f) has no arguments"),
        ([{"role": "tool", "content": "x", "tool_call_id": 5}], "message 0: tool_call_id must be a string"),
    ],
)
def test_bad_messages(template, messages, message):
    with pytest.raises(PuyuError) as info:
        template.render(messages)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_list_of_parts_content_is_joined(template):
    parts = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "world"}]
    assert (
        template.render([{"role": "user", "content": parts}]).text
        == template.render([{"role": "user", "content": "Hello world"}]).text
    )


def test_assistant_with_tool_calls_may_omit_content(template):
    text = template.render([{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [_call({})]}]).text
    assert '{"name": "f", "arguments": {}}' in text


def test_bad_tools(template):
    with pytest.raises(PuyuError, match=r"tools\[1\]: expected a dict"):
        template.render(
            [{"role": "user", "content": "q"}], tools=[{"type": "function", "function": {"name": "f"}}, "g"]
        )
    with pytest.raises(PuyuError, match=r"tools\[0\]: missing the function name"):
        template.render([{"role": "user", "content": "q"}], tools=[{"type": "function", "function": {}}])


def test_unknown_builtin_lists_the_known_ones():
    with pytest.raises(
        PuyuError, match=r"unknown chat template 'chatml' \(built-in templates: internlm2, llama3, qwen2\)"
    ):
        ChatTemplate.builtin("chatml")


def test_unknown_family_without_template():
    class Bare:
        chat_template = None

    with pytest.raises(PuyuError, match="no chat template for model family 'gpt2'"):
        ChatTemplate.for_model(Bare(), "gpt2")


def test_template_syntax_error():
    with pytest.raises(PuyuError, match="chat template does not parse: line 1"):
        ChatTemplate.from_source("{% for m in messages %}")


def test_template_raise_exception_and_llama_parallel_calls():
    with pytest.raises(PuyuError, match="chat template 'custom' failed: nope"):
        ChatTemplate.from_source("{{ raise_exception('nope') }}").render([{"role": "user", "content": "q"}])
    calls = [_call({}), _call({"a": 1})]
    with pytest.raises(PuyuError, match="only supports single tool-calls"):
        ChatTemplate.builtin("llama3").render(
            [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": calls}]
        )


def test_sandbox_blocks_unsafe_access():
    template = ChatTemplate.from_source("{{ messages.__class__.__mro__ }}")
    with pytest.raises(PuyuError, match="failed"):
        template.render([{"role": "user", "content": "q"}])
    namespace = ChatTemplate.from_source("{% set ns = namespace(_x=1) %}{{ ns }}")
    with pytest.raises(PuyuError, match="underscore"):
        namespace.render([{"role": "user", "content": "q"}])
