"""LLMEngine against reference generation (dense cache, one sequence at a time, fp32), token for token."""

from __future__ import annotations

import random

import pytest
import torch

from puyu.engine.config import EngineConfig
from puyu.engine.engine import LLMEngine
from puyu.errors import PuyuError
from puyu.generation.generator import Generator
from puyu.generation.sampling import SamplingParams


def _engine(tiny, **config) -> LLMEngine:
    model, tokenizer = tiny
    return LLMEngine(model, tokenizer, EngineConfig(**config))


def _prompts(count: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    shared = [rng.randrange(3, 250) for _ in range(13)]
    prompts = []
    for i in range(count):
        own = [rng.randrange(3, 250) for _ in range(rng.choice([1, 2, 5, 9, 17, 33]))]
        prompts.append(shared + own if i % 3 == 0 else own)
    return prompts


def _run(engine: LLMEngine, prompts: list[list[int]], params: list[SamplingParams], seed: int = 0) -> dict:
    """Add requests at random steps (continuous batching) and collect everything each produced."""
    rng = random.Random(seed)
    pending = list(enumerate(prompts))
    results: dict[str, dict] = {}
    while pending or engine.has_unfinished_requests():
        while pending and (not engine.has_unfinished_requests() or rng.random() < 0.4):
            i, prompt = pending.pop(0)
            engine.add_request(str(i), prompt, params[i])
            results[str(i)] = {"ids": [], "text": "", "finish": None, "logprobs": [], "outputs": []}
        for out in engine.step():
            result = results[out.request_id]
            result["ids"] += out.token_ids
            result["text"] += out.text
            result["outputs"].append(out)
            result["logprobs"] += out.logprobs or []
            if out.finished:
                result["finish"] = (out.finish_reason, out.stop_reason)
    return results


def _check_against_reference(tiny, engine: LLMEngine, prompts, params) -> None:
    model, tokenizer = tiny
    reference = Generator(model, tokenizer)
    results = _run(engine, prompts, params)
    for i, prompt in enumerate(prompts):
        expected = reference.generate(prompt, params[i])
        got = results[str(i)]
        assert got["ids"] == expected.token_ids, f"request {i}"
        assert got["text"] == expected.text
        assert got["finish"] == (expected.finish_reason, expected.stop_reason)
    stats = engine.stats()
    assert stats.kv_blocks_used == 0 and stats.num_running == stats.num_waiting == 0


@pytest.mark.parametrize("attention", ["auto", "reference"])
def test_greedy_continuous_batching_matches_reference(tiny, attention: str):
    engine = _engine(tiny, block_size=4, num_blocks=256, max_num_batched_tokens=24, attention=attention)
    prompts = _prompts(10)
    params = [SamplingParams(max_tokens=random.Random(i).randrange(1, 20), temperature=0) for i in range(10)]
    _check_against_reference(tiny, engine, prompts, params)
    assert engine.stats().prefix_cache_hit_rate > 0


def test_preemption_keeps_outputs_identical(tiny):
    engine = _engine(tiny, block_size=4, num_blocks=20, max_num_batched_tokens=64)
    prompts = _prompts(8, seed=1)
    params = [SamplingParams(max_tokens=16, temperature=0, ignore_eos=True)] * 8
    _check_against_reference(tiny, engine, prompts, params)
    assert engine.stats().num_preempted_total > 0


def test_seeded_sampling_with_penalties_and_stop_strings_matches_reference(tiny):
    engine = _engine(tiny, block_size=8, num_blocks=128, max_num_batched_tokens=32, enable_prefix_caching=False)
    prompts = _prompts(6, seed=2)
    params = [
        SamplingParams(max_tokens=24, temperature=0.9, top_k=40, seed=11),
        SamplingParams(max_tokens=24, temperature=1.2, top_p=0.8, repetition_penalty=1.3, seed=12),
        SamplingParams(max_tokens=24, temperature=0.7, min_p=0.1, presence_penalty=0.5, frequency_penalty=0.4, seed=13),
        SamplingParams(max_tokens=24, temperature=0, repetition_penalty=1.5, stop=["e", "a"]),
        SamplingParams(max_tokens=24, temperature=1.0, seed=14, logit_bias={65: 3.0, 66: 2.0}),
        SamplingParams(max_tokens=24, temperature=0, stop_token_ids=[70, 71, 72, 73, 74, 75]),
    ]
    _check_against_reference(tiny, engine, prompts, params)


def test_logprobs_and_prompt_logprobs_equal_a_direct_forward(tiny):
    model, tokenizer = tiny
    engine = _engine(tiny, block_size=4, num_blocks=64, max_num_batched_tokens=8)
    prompt = _prompts(1, seed=3)[0] + [5, 6, 7, 8]
    params = SamplingParams(max_tokens=5, temperature=0, logprobs=True, top_logprobs=3, prompt_logprobs=2)
    result = _run(engine, [prompt], [params])["0"]
    full = prompt + result["ids"]
    with torch.no_grad():
        logprobs = model(torch.tensor([full]))[0].float().log_softmax(-1)
    prompt_logprobs = result["outputs"][0].prompt_logprobs
    assert prompt_logprobs[0] is None and len(prompt_logprobs) == len(prompt)
    for position, entry in enumerate(prompt_logprobs[1:], start=1):
        assert entry.token_id == prompt[position]
        assert entry.logprob == pytest.approx(float(logprobs[position - 1, prompt[position]]), abs=1e-4)
        assert [t for t, _, _ in entry.top] == logprobs[position - 1].topk(2).indices.tolist()
    # Generated tokens are scored under the sampling distribution, which excludes ids the tokenizer lacks.
    with torch.no_grad():
        logits = model(torch.tensor([full]))[0].float()
    logits[:, tokenizer.vocab_size :] = float("-inf")
    sampled = logits.log_softmax(-1)
    for j, entry in enumerate(result["logprobs"]):
        row = sampled[len(prompt) - 1 + j]
        assert entry.token_id == result["ids"][j] == int(row.argmax())
        assert entry.logprob == pytest.approx(float(row.max()), abs=1e-4)
        assert [t for t, _, _ in entry.top] == row.topk(3).indices.tolist()
        assert entry.top[0][2] == pytest.approx(entry.logprob, abs=1e-5)
    assert all(out.prompt_logprobs is None for out in result["outputs"][1:])


def test_int8_kv_cache_logits_stay_close_to_fp32(tiny):
    _model, _ = tiny
    prompt = _prompts(1, seed=4)[0] * 3
    engines = {
        kind: _engine(tiny, block_size=4, num_blocks=64, max_num_batched_tokens=16, kv_cache_dtype=kind)
        for kind in ("auto", "int8")
    }
    captured: dict[str, list[torch.Tensor]] = {"auto": [], "int8": []}
    for kind, engine in engines.items():
        execute = engine.runner.execute

        def capture(chunks, execute=execute, kind=kind):
            result = execute(chunks)
            captured[kind].append(result.last.clone())
            return result

        engine.runner.execute = capture
        _run(engine, [prompt], [SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)])
    reference, quantized = torch.cat(captured["auto"]), torch.cat(captured["int8"])
    error = (reference - quantized).abs().max()
    assert 0 < error < 0.02 * reference.std()


def test_min_tokens_and_max_model_len(tiny):
    _model, tokenizer = tiny
    eos = tokenizer.eos_id
    engine = _engine(tiny, block_size=4, num_blocks=64, max_model_len=24)
    params = SamplingParams(max_tokens=50, temperature=0, min_tokens=3, logit_bias={eos: 100.0})
    result = _run(engine, [[5, 6, 7]], [params])["0"]
    assert result["ids"][-1] == eos and len(result["ids"]) == 4 and result["finish"] == ("stop", eos)
    result = _run(engine, [[5] * 20], [SamplingParams(max_tokens=50, temperature=0, ignore_eos=True)])["0"]
    assert len(result["ids"]) == 4 and result["finish"][0] == "length"
    with pytest.raises(PuyuError, match=r"25 tokens.*24"):
        engine.add_request("long", [5] * 25, params)
    with pytest.raises(PuyuError, match="empty"):
        engine.add_request("empty", [], params)


def test_abort_frees_blocks_and_unknown_ids_are_ignored(tiny):
    engine = _engine(tiny, block_size=4, num_blocks=64)
    engine.add_request("a", list(range(3, 40)), SamplingParams(max_tokens=30))
    engine.add_request("b", list(range(3, 10)), SamplingParams(max_tokens=30))
    engine.step()
    assert engine.stats().kv_blocks_used > 0
    engine.abort("a")
    engine.abort("nope")
    engine.abort("b")
    assert not engine.has_unfinished_requests()
    assert engine.stats().kv_blocks_used == 0 and engine.step() == []


def test_a_sequence_outgrowing_the_whole_pool_ends_with_length(tiny):
    engine = _engine(tiny, block_size=4, num_blocks=3)
    result = _run(engine, [[5, 6, 7, 8, 9]], [SamplingParams(max_tokens=50, temperature=0, ignore_eos=True)])["0"]
    assert len(result["ids"]) == 12 - 5 + 1 and result["finish"] == ("length", None)
    assert engine.stats().kv_blocks_used == 0


def test_kv_pool_is_sized_from_kv_cache_memory(tiny):
    from puyu.engine.paged_cache import PagedKVPool

    model, _ = tiny
    mc = model.config
    per_block = PagedKVPool.bytes_per_block(mc.num_layers, mc.num_kv_heads, mc.head_dim, 16, torch.float32, "auto")
    assert per_block == mc.num_layers * 2 * mc.num_kv_heads * 16 * mc.head_dim * 4
    engine = _engine(tiny, kv_cache_memory=per_block * 300, max_model_len=256)
    assert engine.num_blocks == 300
    int8 = _engine(tiny, kv_cache_memory=per_block * 300, max_model_len=256, kv_cache_dtype="int8")
    assert int8.num_blocks > 2 * 300  # int8 storage plus per-token scales is less than half of fp32
    auto = _engine(tiny, max_model_len=64, max_num_seqs=3)
    assert auto.num_blocks == 3 * 64 // 16  # enough for max_num_seqs full-length sequences, no more
    with pytest.raises(PuyuError, match="fewer than one sequence"):
        _engine(tiny, kv_cache_memory=per_block * 2, max_model_len=256)


def test_repeated_prompt_reports_cached_tokens(tiny):
    engine = _engine(tiny, block_size=4, num_blocks=64)
    prompt = list(range(10, 40))
    params = SamplingParams(max_tokens=3, temperature=0)
    first = _run(engine, [prompt], [params])["0"]["outputs"]
    second = _run(engine, [prompt], [params])["0"]["outputs"]
    assert first[0].num_cached_tokens == 0
    assert second[0].num_cached_tokens == 28  # every full block except the one holding the last token
    assert [o.token_ids for o in first] == [o.token_ids for o in second]
