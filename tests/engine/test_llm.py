"""The offline LLM API on a tiny folder, against the reference Generator."""

from __future__ import annotations

import json

import pytest
import torch

import puyu
from puyu.engine.llm import LLM
from puyu.errors import PuyuError
from puyu.generation.generator import Generator
from puyu.generation.sampling import SamplingParams

GREEDY = SamplingParams(max_tokens=12, temperature=0)


@pytest.fixture(scope="module")
def llm(tiny_folder) -> LLM:
    return puyu.LLM(tiny_folder, block_size=4, num_blocks=128, max_num_seqs=4, device="cpu")


@pytest.fixture(scope="module")
def reference(tiny_folder) -> Generator:
    return Generator.from_pretrained(tiny_folder, dtype="float32")


def _forcing(tokenizer, text: str):
    """A logits processor that makes the model say `text` (then EOS)."""
    script = [*tokenizer.encode(text, add_special_tokens=False), tokenizer.eos_id]

    def force(ids: list[int], row: torch.Tensor) -> torch.Tensor:
        forced = torch.full_like(row, float("-inf"))
        forced[script[min(len(ids), len(script) - 1)]] = 0.0
        return forced

    return force


def test_generate_matches_reference_for_text_and_token_prompts(llm: LLM, reference: Generator):
    prompts = ["hello world", "a", "the quick brown fox jumps over the lazy dog", "x" * 40]
    outputs = llm.generate(prompts, GREEDY, progress=True)
    assert [o.text for o in outputs] == [reference.generate(p, GREEDY).text for p in prompts]
    ids = [llm.tokenizer.encode(p) for p in prompts]
    by_ids = llm.generate(ids, [GREEDY] * len(ids))
    assert [o.token_ids for o in by_ids] == [o.token_ids for o in outputs]
    assert outputs[2].num_prompt_tokens == len(ids[2]) and outputs[0].finish_reason in ("stop", "length")
    assert llm.engine.stats().kv_blocks_used == 0


def test_chat_matches_reference_and_parses_tool_calls(llm: LLM, reference: Generator):
    messages = [{"role": "user", "content": "hi there"}]
    (out,) = llm.chat(messages, GREEDY)
    assert out.content == reference.chat(messages, GREEDY).content
    call = '<|action_start|><|plugin|>\n{"name": "calculator", "parameters": {"expression": "2+3"}}<|action_end|>'
    params = SamplingParams(
        max_tokens=200,
        temperature=0,
        logits_processors=[_forcing(llm.tokenizer, "Let me compute." + call + "<|im_end|>")],
    )
    tools = [{"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}}]
    outs = llm.chat([messages, messages], params, tools=tools)
    for out in outs:
        assert out.finish_reason == "tool_calls" and out.content == "Let me compute."
        assert out.tool_calls[0]["function"]["name"] == "calculator"
        assert json.loads(out.tool_calls[0]["function"]["arguments"]) == {"expression": "2+3"}


def test_stream_pieces_join_to_the_generated_text_and_early_exit_aborts(llm: LLM):
    params = SamplingParams(max_tokens=20, temperature=0, ignore_eos=True, stop=["zz"])
    whole = llm.generate("stream me", params)[0]
    pieces = list(llm.stream("stream me", params))
    assert "".join(p.text for p in pieces) == whole.text
    assert pieces[-1].finished and sum(len(p.token_ids) for p in pieces) == len(whole.token_ids)
    for _ in llm.stream("stream me", params):
        break
    assert not llm.engine.has_unfinished_requests() and llm.engine.stats().kv_blocks_used == 0
    chat_text = "".join(p.text for p in llm.stream_chat([{"role": "user", "content": "yo"}], GREEDY))
    assert chat_text == llm.chat([{"role": "user", "content": "yo"}], GREEDY)[0].text


def test_mismatched_parameter_list_is_a_user_error(llm: LLM):
    with pytest.raises(PuyuError, match="2 sampling parameters for 3 prompts"):
        llm.generate(["a", "b", "c"], [GREEDY, GREEDY])
