"""An InternLM2-shaped folder with the real tokenizer files: chat prompts carry the documented token ids."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from puyu.chat import ChatTemplate
from puyu.generation import SamplingParams
from puyu.generation.generator import Generator
from puyu.model import ModelConfig, save_model
from puyu.model.init import random_model

IM_START, IM_END, ACTION_START, ACTION_END, PLUGIN = 92543, 92542, 92541, 92540, 92538


@pytest.fixture(scope="module")
def internlm2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "internlm2"
    if not (shared / "tokenizer.model").is_file():
        pytest.skip("../shared/data/internlm2 is not present")
    folder = tmp_path_factory.mktemp("internlm2") / "model"
    # The real vocabulary and special ids, a tiny random body.
    config = ModelConfig.from_name("internlm2-chat-1.8b").replace(
        hidden_size=32, intermediate_size=64, num_layers=1, num_heads=4, num_kv_heads=2, head_dim=None
    )
    save_model(random_model(config.replace(head_dim=8)), folder)
    for name in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copyfile(shared / name, folder / name)
    return folder


def test_chat_prompt_ids_follow_the_documented_format(internlm2_folder: Path):
    gen = Generator.from_pretrained(internlm2_folder)
    sp = gen.tokenizer
    ids = gen.chat_prompt_ids([{"role": "system", "content": "你是书生·浦语"}, {"role": "user", "content": "hi"}])
    piece = lambda text: sp.encode(text, add_special_tokens=False)  # noqa: E731
    expected = [1, IM_START, *piece("system\n你是书生·浦语"), IM_END, *piece("\n")]
    expected += [IM_START, *piece("user\nhi"), IM_END, *piece("\n"), IM_START, *piece("assistant\n")]
    assert ids == expected
    assert IM_END in gen.chat_stop_ids


def test_tool_turns_use_the_plugin_tokens(internlm2_folder: Path):
    gen = Generator.from_pretrained(internlm2_folder)
    tools = [{"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}}]
    messages = [
        {"role": "user", "content": "2+3?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "calculator", "arguments": '{"e": "2+3"}'}}],
        },
        {"role": "tool", "content": "5"},
    ]
    ids = gen.chat_prompt_ids(messages, tools)
    assert ids.count(PLUGIN) == 3  # the tools turn, the call, the environment turn
    assert ids.index(ACTION_START) < ids.index(ACTION_END)
    text = gen.tokenizer.decode(ids)
    assert "<|im_start|>environment name=<|plugin|>\n5<|im_end|>" in text


def test_label_mask_covers_assistant_tokens_only(internlm2_folder: Path):
    gen = Generator.from_pretrained(internlm2_folder)
    template = ChatTemplate.builtin("internlm2")
    messages = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！有什么可以帮你？"}]
    ids, mask = template.encode(gen.tokenizer, messages)
    trained = [token for token, keep in zip(ids, mask, strict=True) if keep]
    assert gen.tokenizer.decode(trained) == "你好！有什么可以帮你？<|im_end|>"
    assert trained[-1] == IM_END


def test_generation_runs_on_the_real_vocabulary(internlm2_folder: Path):
    gen = Generator.from_pretrained(internlm2_folder)
    out = gen.chat([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=6, temperature=0))
    assert out.output is not None and 1 <= len(out.output.token_ids) <= 6
