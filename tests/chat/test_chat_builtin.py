"""The built-in templates: exact formats, spans, and picking a template for a model."""

from __future__ import annotations

import re

import pytest
from chat_support import (
    CHATML_LOOP_LAST,
    CONVERSATIONS,
    INTERNLM2_ORIGINAL,
    TOOL_CHAT,
    TOOLS,
    WEATHER_TOOL,
    OffsetsTokenizer,
)

from puyu.chat import BUILTINS, ChatTemplate

GENERATION_TAG = re.compile(r"\{%-?\s*(?:end)?generation\s*-?%\}")


def test_internlm2_tool_protocol_exact_text():
    rendered = ChatTemplate.builtin("internlm2").render(TOOL_CHAT, tools=[WEATHER_TOOL], add_generation_prompt=True)
    expected = (
        "<s><|im_start|>system\nAnswer with tools when useful.<|im_end|>\n"
        "<|im_start|>system name=<|plugin|>\n"
        '[{"name": "get_weather", "description": "Get the current weather in a given location", '
        '"parameters": {"type": "object", "properties": {"location": {"type": "string", '
        '"description": "City name, e.g. 上海"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, '
        '"required": ["location"]}}]<|im_end|>\n'
        "<|im_start|>user\nWeather in Shanghai?<|im_end|>\n"
        "<|im_start|>assistant\nLet me check.<|action_start|><|plugin|>\n"
        '{"name": "get_weather", "parameters": {"location": "Shanghai", "unit": "celsius"}}'
        "<|action_end|><|im_end|>\n"
        '<|im_start|>environment name=<|plugin|>\n{"temperature": 22}<|im_end|>\n'
        "<|im_start|>assistant\nIt is 22 degrees in Shanghai.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert rendered.text == expected
    assert [rendered.text[a:b] for a, b in rendered.assistant_spans] == [
        'Let me check.<|action_start|><|plugin|>\n{"name": "get_weather", "parameters": '
        '{"location": "Shanghai", "unit": "celsius"}}<|action_end|><|im_end|>',
        "It is 22 degrees in Shanghai.<|im_end|>",
    ]


def test_internlm2_plain_chat_and_tools_without_system():
    template = ChatTemplate.builtin("internlm2")
    text = template.render([{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL]).text
    assert text.startswith("<s><|im_start|>system name=<|plugin|>\n[{")
    assert text.endswith("<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n")
    plain = template.render([{"role": "user", "content": "hi"}], add_generation_prompt=True).text
    assert plain == "<s><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_internlm2_multiple_calls_render_one_action_each():
    messages, tools = CONVERSATIONS["parallel_calls"]
    text = ChatTemplate.builtin("internlm2").render(messages, tools=tools).text
    assert (
        "<|im_start|>assistant\n<|action_start|><|plugin|>\n"
        '{"name": "get_weather", "parameters": {"location": "Tokyo", "unit": "celsius"}}<|action_end|>'
        '<|action_start|><|plugin|>\n{"name": "get_time", "parameters": {"tz": "Asia/Tokyo"}}<|action_end|>'
        "<|im_end|>\n"
    ) in text
    assert text.count("<|im_start|>environment name=<|plugin|>\n") == 2


def test_qwen2_default_system_prompt_and_tool_response_turn():
    messages, tools = CONVERSATIONS["parallel_calls"]
    text = ChatTemplate.builtin("qwen2").render(messages[:1], add_generation_prompt=True).text
    assert text == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWeather and time in Tokyo?<|im_end|>\n<|im_start|>assistant\n"
    )
    text = ChatTemplate.builtin("qwen2").render(messages, tools=tools).text
    assert (
        "<|im_start|>user\n<tool_response>\nrain\n</tool_response>\n<tool_response>\n09:00\n</tool_response><|im_end|>\n"
        in text
    )


def test_llama3_header_has_the_date_lines():
    text = ChatTemplate.builtin("llama3").render([{"role": "user", "content": " hi "}], add_generation_prompt=True).text
    assert text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


@pytest.mark.parametrize("name", list(BUILTINS))
def test_string_arguments_render_like_dict_arguments(name):
    messages, tools = CONVERSATIONS["tools"]
    as_string = [dict(m) for m in messages]
    call = as_string[2]["tool_calls"][0]
    as_string[2] = {
        **as_string[2],
        "tool_calls": [
            {**call, "function": {"name": "get_weather", "arguments": '{"location": "Shanghai", "unit": "celsius"}'}}
        ],
    }
    template = ChatTemplate.builtin(name)
    assert template.render(as_string, tools=tools).text == template.render(messages, tools=tools).text


@pytest.mark.parametrize("name", list(BUILTINS))
@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
def test_prefix_diff_spans_equal_generation_tag_spans(name, conversation):
    messages, tools = CONVERSATIONS[conversation]
    if name == "llama3" and conversation == "parallel_calls":
        pytest.skip("Llama 3.1 takes one call per turn")
    tagged = ChatTemplate.builtin(name)
    untagged = ChatTemplate.from_source(
        GENERATION_TAG.sub("", tagged.source), special_tokens=BUILTINS[name].special_tokens, family_hint=name
    )
    assert not GENERATION_TAG.search(untagged.source)
    for add_generation_prompt in (False, True):
        want = tagged.render(messages, tools=tools, add_generation_prompt=add_generation_prompt)
        got = untagged.render(messages, tools=tools, add_generation_prompt=add_generation_prompt)
        assert got.text == want.text
        assert got.assistant_spans == want.assistant_spans
        assert len(want.assistant_spans) == sum(m["role"] == "assistant" for m in messages)


def test_prefix_diff_spans_on_the_original_internlm2_template():
    template = ChatTemplate.from_source(INTERNLM2_ORIGINAL, special_tokens={"bos_token": "<s>", "eos_token": "</s>"})
    messages, _ = CONVERSATIONS["multi_turn"]
    rendered = template.render(messages)
    assert [rendered.text[a:b] for a, b in rendered.assistant_spans] == ["4<|im_end|>", "6, 书生浦语 says.  <|im_end|>"]
    assert rendered.assistant_spans == ChatTemplate.builtin("internlm2").render(messages).assistant_spans


def test_encode_mask_marks_assistant_tokens_only():
    template = ChatTemplate.builtin("qwen2")
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "AB"},
    ]
    ids, mask = template.encode(OffsetsTokenizer(), messages)
    tokenizer = OffsetsTokenizer()._tokenizer
    tokens = [tokenizer.id_to_token(i) for i in ids]
    assert tokens[-4:] == ["A", "B", "<|im_end|>", "\n"]
    assert [t for t, m in zip(tokens, mask, strict=True) if m] == ["A", "B", "<|im_end|>"]
    ids_prompt, mask_prompt = template.encode(OffsetsTokenizer(), messages[:2], add_generation_prompt=True)
    assert not any(mask_prompt)
    assert len(ids_prompt) == len(mask_prompt)


class _FakeTokenizer:
    def __init__(self, chat_template=None, **tokens):
        self.chat_template = chat_template
        self.bos_token = tokens.get("bos_token")
        self.eos_token = tokens.get("eos_token")
        self.pad_token = tokens.get("pad_token")
        self.unk_token = tokens.get("unk_token")


def test_for_model_prefers_name_then_folder_template_then_family_default():
    folder = _FakeTokenizer(INTERNLM2_ORIGINAL, bos_token="<s>", eos_token="</s>")
    template = ChatTemplate.for_model(folder, "internlm2")
    assert template.name == "custom" and template.source == INTERNLM2_ORIGINAL
    assert template.stop_strings == ["<|im_end|>", "</s>"]
    assert template.tool_format == "internlm2"
    assert template.render([{"role": "user", "content": "x"}]).text == "<s><|im_start|>user\nx<|im_end|>\n"

    named = ChatTemplate.for_model(folder, "internlm2", name="qwen2")
    assert named.name == "qwen2" and named.stop_strings == ["<|im_end|>", "<|endoftext|>"]

    bare = _FakeTokenizer(None, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>")
    llama = ChatTemplate.for_model(bare, "llama")
    assert llama.name == "llama3" and llama.stop_strings == ["<|eot_id|>", "<|eom_id|>"]
    assert llama.special_tokens["eos_token"] == "<|end_of_text|>"
    assert ChatTemplate.for_model(_FakeTokenizer(), "qwen2").name == "qwen2"
    assert ChatTemplate.for_model(_FakeTokenizer(), "internlm2").render(TOOL_CHAT, tools=TOOLS).text.startswith("<s>")


def test_from_source_guesses_tool_format_and_stops():
    chatml = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    assert ChatTemplate.from_source(chatml).tool_format is None
    assert ChatTemplate.from_source(chatml).stop_strings == ["<|im_end|>"]
    assert ChatTemplate.from_source(chatml, family_hint="qwen2").tool_format == "qwen2"
    assert ChatTemplate.from_source(chatml + "<tool_call>", family_hint="internlm2").tool_format == "qwen2"
    llama = ChatTemplate.from_source("<|start_header_id|>{{ x }}<|eot_id|>", special_tokens={"eos_token": "<|eot_id|>"})
    assert llama.tool_format == "llama3" and llama.stop_strings == ["<|eot_id|>", "<|eom_id|>"]


def test_prefix_diff_spans_when_the_generation_prompt_differs_from_the_turn_header():
    # CHATML_LOOP_LAST indents each turn header but not its generation prompt.
    rendered = ChatTemplate.from_source(CHATML_LOOP_LAST).render(CONVERSATIONS["multi_turn"][0])
    assert [rendered.text[a:b] for a, b in rendered.assistant_spans] == [
        "4\n<|im_end|>",
        "6, 书生浦语 says.  \n<|im_end|>",
    ]


def test_prefix_diff_spans_when_the_last_message_renders_differently():
    source = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>{% if loop.last %}[END]{% endif %}\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    rendered = ChatTemplate.from_source(source).render(CONVERSATIONS["multi_turn"][0])
    assert [rendered.text[a:b] for a, b in rendered.assistant_spans] == ["4<|im_end|>", "6, 书生浦语 says.  <|im_end|>"]


def test_prefix_diff_warns_when_a_turn_cannot_be_found():
    # The template cannot render an empty conversation, so the opening assistant turn has no prefix.
    template = ChatTemplate.from_source(INTERNLM2_ORIGINAL.replace("{{ bos_token }}", "{{ messages[0]['role'] }}"))
    messages = [
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Yo"},
    ]
    with pytest.warns(UserWarning, match="no assistant span for message 0"):
        rendered = template.render(messages)
    assert [rendered.text[a:b] for a, b in rendered.assistant_spans] == ["Yo<|im_end|>"]
