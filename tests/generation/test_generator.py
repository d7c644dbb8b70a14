"""The text/chat layer: stop ids and strings, streaming, UTF-8 safety, tool calls, template choice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from puyu.chat import ChatTemplate
from puyu.generation import SamplingParams
from puyu.generation.generator import Generator
from puyu.model import ModelConfig
from puyu.tokenizer import Tokenizer, byte_level_tokenizer


class ScriptedModel(torch.nn.Module):
    """Stands in for CausalLM: whatever the input, the next token is the next entry of `script`."""

    def __init__(self, script: list[int], vocab_size: int) -> None:
        super().__init__()
        self.config = ModelConfig.from_name("internlm2-tiny", vocab_size=vocab_size)
        self.script = script
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.produced = 0

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    @property
    def dtype(self) -> torch.dtype:
        return self.anchor.dtype

    def forward(self, input_ids, positions=None, cache=None, mask=None, last_only=False):
        if cache is not None:
            if cache.length == 0:
                self.produced = 0
            cache.advance(input_ids.shape[1])
        logits = torch.zeros(1, 1, self.config.vocab_size)
        logits[0, 0, self.script[min(self.produced, len(self.script) - 1)]] = 10.0
        self.produced += 1
        return logits


@pytest.fixture
def tokenizer() -> Tokenizer:
    return byte_level_tokenizer("internlm2")


def _generator(tokenizer: Tokenizer, reply: str, template: ChatTemplate | None = None) -> Generator:
    script = tokenizer.encode(reply, add_special_tokens=False)
    return Generator(ScriptedModel(script, vocab_size=512), tokenizer, template)


def test_chat_stops_at_end_of_turn_token(tokenizer: Tokenizer):
    gen = _generator(tokenizer, "Hello there<|im_end|>ignored")
    out = gen.chat([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=50, temperature=0))
    assert out.content == "Hello there"
    assert out.finish_reason == "stop"
    assert out.output.stop_reason == tokenizer.token_to_id("<|im_end|>")


def test_stop_string_cuts_text_and_streaming_equals_whole(tokenizer: Tokenizer):
    gen = _generator(tokenizer, "count: one, two, three, four")
    params = SamplingParams(max_tokens=60, temperature=0, stop=["three"])
    pieces = list(gen.stream("x", params))
    whole = gen.generate("x", params)
    assert "".join(pieces) == whole.text == "count: one, two, "
    assert whole.finish_reason == "stop" and whole.stop_reason == "three"


def test_length_finish_and_token_accounting(tokenizer: Tokenizer):
    gen = _generator(tokenizer, "abcdefghij")
    out = gen.generate("x", SamplingParams(max_tokens=4, temperature=0))
    assert out.text == "abcd" and out.finish_reason == "length" and len(out.token_ids) == 4
    assert out.prompt_tokens == len(tokenizer.encode("x"))


def test_streamed_pieces_are_whole_characters(tokenizer: Tokenizer):
    text = "书生·浦语 🚀 ok"
    gen = _generator(tokenizer, text + "<|im_end|>")
    pieces = list(gen.stream_chat([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=80, temperature=0)))
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces)
    assert len(pieces) > 3  # streamed, not held to the end


def test_tool_call_is_parsed_with_the_builtin_template(tokenizer: Tokenizer):
    call = '<|action_start|><|plugin|>\n{"name": "calculator", "parameters": {"expression": "2+3"}}<|action_end|>'
    gen = _generator(tokenizer, "Let me compute." + call + "<|im_end|>")
    tools = [{"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}}]
    out = gen.chat([{"role": "user", "content": "2+3?"}], SamplingParams(max_tokens=200, temperature=0), tools=tools)
    assert out.finish_reason == "tool_calls"
    assert out.content == "Let me compute."
    assert out.tool_calls[0]["function"]["name"] == "calculator"
    assert json.loads(out.tool_calls[0]["function"]["arguments"]) == {"expression": "2+3"}


def test_folder_template_without_tools_falls_back_to_builtin_for_tool_requests(tokenizer: Tokenizer):
    shipped = (
        "{{ bos_token }}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
        "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    template = ChatTemplate.from_source(shipped, special_tokens={"bos_token": "<s>"}, family_hint="internlm2")
    gen = _generator(tokenizer, "ok", template)
    messages = [{"role": "user", "content": "hi"}]
    tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    plain = tokenizer.decode(gen.chat_prompt_ids(messages))
    with_tools = tokenizer.decode(gen.chat_prompt_ids(messages, tools))
    assert plain == "<s><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert "<|im_start|>system name=<|plugin|>\n" in with_tools and '"name": "search"' in with_tools


def test_tokenizer_larger_than_model_is_refused(tokenizer: Tokenizer):
    from puyu.errors import PuyuError

    with pytest.raises(PuyuError, match="embeddings"):
        Generator(ScriptedModel([0], vocab_size=100), tokenizer)


def test_generator_loads_a_folder(tmp_path: Path):
    from puyu.model.init import init_model_folder

    folder = init_model_folder("qwen2-tiny", tmp_path / "m", overrides={"num_layers": 1})
    gen = Generator.from_pretrained(folder)
    assert gen.template.name == "qwen2"
    out = gen.chat([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=5, temperature=0))
    assert out.output is not None and len(out.output.token_ids) <= 5
