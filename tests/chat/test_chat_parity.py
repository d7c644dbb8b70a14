"""Our rendering against `transformers.apply_chat_template`, byte for byte."""

from __future__ import annotations

import copy

import pytest
from chat_support import (
    CHATML_LOOP_LAST,
    CHATML_TAGGED,
    CONVERSATIONS,
    INTERNLM2_ORIGINAL,
    LLAMA31_OFFICIAL,
    QWEN25_OFFICIAL,
    TOOLS,
    OffsetsTokenizer,
    hf_tokenizer,
)

from puyu.chat import BUILTINS, ChatTemplate

INTERNLM2_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>"}
LLAMA_TOKENS = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
QWEN_TOKENS = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}

# Folder templates and the conversations each supports (Llama 3.1 takes one call per turn;
# the InternLM2 original knows nothing of tools or content-less messages).
FOLDER_TEMPLATES = {
    "internlm2_original": (INTERNLM2_ORIGINAL, INTERNLM2_TOKENS, ["simple", "multi_turn"]),
    "qwen25_official": (QWEN25_OFFICIAL, QWEN_TOKENS, list(CONVERSATIONS)),
    "llama31_official": (LLAMA31_OFFICIAL, LLAMA_TOKENS, ["simple", "multi_turn", "tools", "tools_no_content"]),
    "chatml_loop_last": (CHATML_LOOP_LAST, INTERNLM2_TOKENS, list(CONVERSATIONS)),
    "chatml_tagged": (CHATML_TAGGED, INTERNLM2_TOKENS, ["simple", "multi_turn"]),
}
BUILTIN_CASES = {
    "internlm2": list(CONVERSATIONS),
    "qwen2": list(CONVERSATIONS),
    "llama3": ["simple", "multi_turn", "tools", "tools_no_content"],
}


def _hf_render(source, tokens, messages, tools, add_generation_prompt, **extra):
    tokenizer = hf_tokenizer(tokens, source)
    return tokenizer.apply_chat_template(
        copy.deepcopy(messages),
        tools=copy.deepcopy(tools),
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
        **extra,
    )


def _cases(table):
    for key, value in table.items():
        conversations = value[-1] if isinstance(value, tuple) else value
        for conversation in conversations:
            for add_generation_prompt in (False, True):
                yield pytest.param(
                    key, conversation, add_generation_prompt, id=f"{key}-{conversation}-{add_generation_prompt}"
                )


@pytest.mark.parametrize(("name", "conversation", "add_generation_prompt"), list(_cases(FOLDER_TEMPLATES)))
def test_folder_template_matches_transformers(name, conversation, add_generation_prompt):
    source, tokens, _ = FOLDER_TEMPLATES[name]
    messages, tools = CONVERSATIONS[conversation]
    template = ChatTemplate.from_source(source, special_tokens=tokens)
    ours = template.render(messages, tools=tools, add_generation_prompt=add_generation_prompt).text
    assert ours == _hf_render(source, tokens, messages, tools, add_generation_prompt)


@pytest.mark.parametrize(("name", "conversation", "add_generation_prompt"), list(_cases(BUILTIN_CASES)))
def test_builtin_matches_transformers(name, conversation, add_generation_prompt):
    template = ChatTemplate.builtin(name)
    messages, tools = CONVERSATIONS[conversation]
    ours = template.render(messages, tools=tools, add_generation_prompt=add_generation_prompt).text
    theirs = _hf_render(template.source, BUILTINS[name].special_tokens, messages, tools, add_generation_prompt)
    assert ours == theirs


@pytest.mark.parametrize(("name", "conversation", "add_generation_prompt"), list(_cases(BUILTIN_CASES)))
def test_builtin_renders_like_the_official_template(name, conversation, add_generation_prompt):
    """The built-ins reproduce what the models' own published templates render."""
    official = {"internlm2": INTERNLM2_ORIGINAL, "qwen2": QWEN25_OFFICIAL, "llama3": LLAMA31_OFFICIAL}[name]
    messages, tools = CONVERSATIONS[conversation]
    if name == "internlm2" and (tools or any(m["role"] == "tool" or m.get("tool_calls") for m in messages)):
        pytest.skip("the original InternLM2 template has no tool support")
    ours = ChatTemplate.builtin(name).render(messages, tools=tools, add_generation_prompt=add_generation_prompt)
    assert ours.text == _hf_render(official, BUILTINS[name].special_tokens, messages, tools, add_generation_prompt)


@pytest.mark.parametrize(
    "extra",
    [
        {"tools_in_user_message": False},
        {"date_string": "01 Jan 2025"},
        {"builtin_tools": ["brave_search", "code_interpreter"]},
    ],
    ids=["tools_in_system", "date_string", "builtin_tools"],
)
def test_llama3_template_variables_match_official(extra):
    messages, tools = CONVERSATIONS["tools"]
    if "builtin_tools" in extra:
        messages = copy.deepcopy(messages)
        messages[2]["tool_calls"][0]["function"] = {"name": "brave_search", "arguments": {"query": "Shanghai weather"}}
    ours = ChatTemplate.builtin("llama3").render(messages, tools=tools, **extra)
    assert ours.text == _hf_render(LLAMA31_OFFICIAL, LLAMA_TOKENS, messages, tools, False, **extra)
    assert ours.text == _hf_render(ChatTemplate.builtin("llama3").source, LLAMA_TOKENS, messages, tools, False, **extra)


def test_template_error_becomes_puyu_error_like_transformers_raises():
    import jinja2

    from puyu.errors import PuyuError

    messages = [{"role": "assistant", "content": "hi"}]
    with pytest.raises(jinja2.TemplateError, match="must not start"):
        _hf_render(CHATML_LOOP_LAST, {}, messages, None, False)
    with pytest.raises(PuyuError, match="must not start"):
        ChatTemplate.from_source(CHATML_LOOP_LAST).render(messages)


def _hf_mask(source, tokens, messages, tools):
    tokenizer = hf_tokenizer(tokens, source)
    out = tokenizer.apply_chat_template(
        copy.deepcopy(messages),
        tools=copy.deepcopy(tools),
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    return out["input_ids"], [bool(flag) for flag in out["assistant_masks"]]


@pytest.mark.parametrize(("name", "conversation"), [(n, c) for n, cs in BUILTIN_CASES.items() for c in cs])
def test_builtin_assistant_mask_matches_transformers(name, conversation):
    template = ChatTemplate.builtin(name)
    messages, tools = CONVERSATIONS[conversation]
    ids, mask = template.encode(OffsetsTokenizer(), messages, tools=tools)
    assert (ids, mask) == _hf_mask(template.source, BUILTINS[name].special_tokens, messages, tools)
    assert any(mask)


def test_folder_template_generation_tags_match_transformers():
    messages, _ = CONVERSATIONS["multi_turn"]
    template = ChatTemplate.from_source(CHATML_TAGGED, special_tokens=INTERNLM2_TOKENS)
    ids, mask = template.encode(OffsetsTokenizer(), messages)
    assert (ids, mask) == _hf_mask(CHATML_TAGGED, INTERNLM2_TOKENS, messages, None)
    rendered = template.render(messages)
    assert [rendered.text[a:b] for a, b in rendered.assistant_spans] == ["4<|im_end|>", "6, 书生浦语 says.  <|im_end|>"]


def test_tools_only_conversation_kwargs_reach_the_template():
    source = "{{ bos_token }}|{{ eos_token }}|{{ documents | tojson }}|{{ flavour }}|{{ messages | length }}"
    template = ChatTemplate.from_source(source, special_tokens={"bos_token": "<s>", "eos_token": None})
    messages = [{"role": "user", "content": "x"}]
    docs = [{"title": "t", "text": "body"}]
    ours = template.render(messages, documents=docs, flavour="mint").text
    tokenizer = hf_tokenizer({"bos_token": "<s>"}, source)
    assert ours == tokenizer.apply_chat_template(messages, documents=docs, flavour="mint", tokenize=False)
    assert ours == '<s>||[{"title": "t", "text": "body"}]|mint|1'


def test_tools_argument_passes_through():
    source = "{{ tools | tojson }}"
    ours = ChatTemplate.from_source(source).render([{"role": "user", "content": "x"}], tools=TOOLS).text
    assert ours == _hf_render(source, {}, [{"role": "user", "content": "x"}], TOOLS, False)


@pytest.mark.filterwarnings("ignore:no assistant span")
def test_messages_reach_the_template_as_transformers_passes_them():
    """None-valued keys dropped, reasoning copied under each of its names, key order kept."""
    source = "{% for m in messages %}{{ m | tojson }}\n{% endfor %}{{ extra_flag | tojson }}"
    messages = [
        {"role": "user", "content": "q", "name": None},
        {
            "role": "assistant",
            "content": None,
            "reasoning": "think first",
            "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}],
        },
        {"role": "tool", "content": "ok", "tool_call_id": "c1"},
    ]
    ours = ChatTemplate.from_source(source).render(messages, extra_flag=(1, 2.5, None)).text
    assert ours == _hf_render(source, {}, messages, None, False, extra_flag=(1, 2.5, None))
    assert '"reasoning_content": "think first"' in ours and "null" not in ours.splitlines()[1]
