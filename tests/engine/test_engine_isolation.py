"""A request whose sampling raises inside a batched step fails alone; the others finish as if it never ran.

Extreme parameters that used to raise there (a 2**70 top_k, a 2**64 seed) are now taken as documented."""

from __future__ import annotations

import asyncio

import pytest

from exploding_processor import Explode
from puyu.engine.async_engine import AsyncLLMEngine, RequestFailedError
from puyu.engine.config import EngineConfig
from puyu.engine.engine import LLMEngine
from puyu.errors import PuyuError
from puyu.generation.generator import Generator
from puyu.generation.sampling import SamplingParams


def _engine(tiny) -> LLMEngine:
    model, tokenizer = tiny
    return LLMEngine(model, tokenizer, EngineConfig(block_size=4, num_blocks=128, max_num_seqs=8))


def _run(engine: LLMEngine) -> dict[str, list]:
    outputs: dict[str, list] = {}
    for _ in range(200):
        if not engine.has_unfinished_requests():
            break
        for out in engine.step():
            outputs.setdefault(out.request_id, []).append(out)
    return outputs


@pytest.mark.parametrize("at", [0, 3])  # during prefill's sampling, and mid-decode
def test_a_failing_request_fails_alone(tiny, at: int) -> None:
    model, tokenizer = tiny
    engine = _engine(tiny)
    greedy = SamplingParams(max_tokens=8, temperature=0)
    prompts = {f"ok{i}": [7 + i] * (4 + 3 * i) for i in range(3)}
    for request_id, prompt in prompts.items():
        engine.add_request(request_id, prompt, greedy)
    engine.add_request("bad", [9] * 5, SamplingParams(max_tokens=8, temperature=0, logits_processors=[Explode(at)]))
    outputs = _run(engine)
    assert outputs["bad"][-1].finish_reason == "error" and "boom" in outputs["bad"][-1].error
    assert len(outputs["bad"]) == at + 1  # its tokens before the failure, then the error
    reference = Generator(model, tokenizer)
    for request_id, prompt in prompts.items():
        tokens = [t for out in outputs[request_id] for t in out.token_ids]
        assert tokens == reference.generate(prompt, greedy).token_ids
        assert outputs[request_id][-1].finish_reason == "length"
    assert engine.stats().kv_blocks_used == 0


def test_async_consumer_of_the_failing_request_gets_the_error(tiny) -> None:
    async def main():
        engine = AsyncLLMEngine(_engine(tiny))
        good = SamplingParams(max_tokens=6, temperature=0)
        bad = SamplingParams(max_tokens=6, temperature=0, logits_processors=[Explode(2)])

        async def collect(request_id: str, params: SamplingParams):
            return [out async for out in engine.generate(request_id, [5, 6, 7], params)]

        results = await asyncio.gather(collect("good", good), collect("bad", bad), return_exceptions=True)
        await engine.shutdown()
        return results

    good, bad = asyncio.run(main())
    assert isinstance(bad, RequestFailedError) and "boom" in str(bad)
    assert good[-1].finished and good[-1].finish_reason == "length"


def test_extreme_but_valid_parameters_run(tiny) -> None:
    """top_k past the vocabulary keeps every token (vLLM's reading); any integer seed works, modulo 2**64."""
    model, tokenizer = tiny
    engine = _engine(tiny)
    cases = {
        "top_k": SamplingParams(max_tokens=4, top_k=2**70, seed=1),
        "seed_high": SamplingParams(max_tokens=4, seed=2**64 + 1),
        "seed_low": SamplingParams(max_tokens=4, seed=-(2**63) - 5),
    }
    for request_id, params in cases.items():
        engine.add_request(request_id, [5, 6, 7], params)
    outputs = _run(engine)
    assert all(outputs[r][-1].finish_reason == "length" for r in cases)
    # The same draws as the seeds they reduce to, in the reference generator too.
    reference = Generator(model, tokenizer)
    tokens = [t for out in outputs["seed_high"] for t in out.token_ids]
    assert tokens == reference.generate([5, 6, 7], SamplingParams(max_tokens=4, seed=1)).token_ids
    top_k = [t for out in outputs["top_k"] for t in out.token_ids]
    assert top_k == reference.generate([5, 6, 7], SamplingParams(max_tokens=4, seed=1)).token_ids


@pytest.mark.parametrize(
    "fields",
    [
        {"repetition_penalty": 1e-300},
        {"repetition_penalty": float("inf")},
        {"temperature": float("nan")},
        {"logit_bias": {3: float("inf")}},
    ],
)
def test_parameters_the_sampler_cannot_handle_are_refused(fields) -> None:
    with pytest.raises(PuyuError):
        SamplingParams(**fields)


def test_out_of_vocabulary_ids_are_refused_at_add(tiny) -> None:
    engine = _engine(tiny)
    vocab = engine.model_config.vocab_size
    with pytest.raises(PuyuError, match="stop_token_ids"):
        engine.add_request("a", [5], SamplingParams(stop_token_ids=[vocab]))
    with pytest.raises(PuyuError, match="logit_bias"):
        engine.add_request("b", [5], SamplingParams(logit_bias={-1: 1.0}))
