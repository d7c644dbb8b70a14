"""AsyncLLMEngine: concurrent requests, abort on consumer exit, queue limit, draining shutdown."""

from __future__ import annotations

import asyncio

import pytest

from puyu.engine.async_engine import AsyncLLMEngine, QueueFullError
from puyu.engine.config import EngineConfig
from puyu.engine.engine import LLMEngine
from puyu.generation.generator import Generator
from puyu.generation.sampling import SamplingParams


def _async_engine(tiny, max_queue: int | None = None, **config) -> AsyncLLMEngine:
    model, tokenizer = tiny
    config = {"block_size": 4, "num_blocks": 128, "max_num_seqs": 4} | config
    return AsyncLLMEngine(LLMEngine(model, tokenizer, EngineConfig(**config)), max_queue=max_queue)


async def _collect(engine: AsyncLLMEngine, request_id: str, prompt: list[int], params: SamplingParams):
    return [out async for out in engine.generate(request_id, prompt, params)]


async def _settled(engine: AsyncLLMEngine):
    """Stats once the stepping thread has applied queued aborts (bounded wait)."""
    for _ in range(500):
        stats = engine.stats()
        if stats.num_running + stats.num_waiting == 0:
            break
        await asyncio.sleep(0.01)
    return stats


def test_concurrent_requests_match_reference(tiny):
    model, tokenizer = tiny
    prompts = [[5 + i] * (3 + 5 * i) for i in range(6)]
    params = SamplingParams(max_tokens=10, temperature=0)

    async def main():
        engine = _async_engine(tiny)
        results = await asyncio.gather(*(_collect(engine, f"r{i}", p, params) for i, p in enumerate(prompts)))
        await engine.shutdown()
        return results, engine.stats()

    results, stats = asyncio.run(main())
    reference = Generator(model, tokenizer)
    for prompt, outputs in zip(prompts, results, strict=True):
        assert [t for o in outputs for t in o.token_ids] == reference.generate(prompt, params).token_ids
        assert outputs[-1].finished and not any(o.finished for o in outputs[:-1])
    assert stats.kv_blocks_used == 0


def test_consumer_exit_aborts_and_abort_ends_the_stream(tiny):
    params = SamplingParams(max_tokens=200, temperature=0, ignore_eos=True)

    async def main():
        engine = _async_engine(tiny)
        stream = engine.generate("early", [5, 6, 7], params)
        async for _ in stream:
            break
        await stream.aclose()
        mid = await _settled(engine)

        outputs = []
        async for out in engine.generate("aborted", [8, 9], params):
            outputs.append(out)
            if len(outputs) == 1:
                engine.abort("aborted")
        await engine.shutdown()
        return mid, outputs, engine.stats()

    mid, outputs, end = asyncio.run(main())
    assert mid.num_running + mid.num_waiting == 0 and mid.kv_blocks_used == 0
    assert outputs[-1].finished and outputs[-1].finish_reason == "abort"
    assert end.kv_blocks_used == 0


def test_queue_full_is_raised_before_anything_is_yielded(tiny):
    params = SamplingParams(max_tokens=1500, temperature=0, ignore_eos=True)

    async def main():
        engine = _async_engine(tiny, max_queue=1, max_num_seqs=1)
        first = asyncio.create_task(_collect(engine, "a", [5, 6], params))
        while engine.stats().num_running == 0:  # "a" runs; one more request may wait
            await asyncio.sleep(0.01)
        second = asyncio.create_task(_collect(engine, "b", [5, 6], params))
        while engine.stats().num_waiting == 0:
            await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError):
            await _collect(engine, "c", [5, 6], params)
        engine.abort("a")
        engine.abort("b")
        results = await asyncio.gather(first, second)
        await engine.shutdown()
        return results

    results = asyncio.run(main())
    assert [r[-1].finish_reason for r in results] == ["abort", "abort"]


def test_shutdown_drains_in_flight_requests(tiny):
    params = SamplingParams(max_tokens=30, temperature=0, ignore_eos=True)

    async def main():
        engine = _async_engine(tiny)
        tasks = [asyncio.create_task(_collect(engine, f"r{i}", [5 + i, 6], params)) for i in range(3)]
        await asyncio.sleep(0.05)
        await engine.shutdown(drain=True)
        results = await asyncio.gather(*tasks)
        with pytest.raises(QueueFullError):
            await _collect(engine, "late", [5], params)
        return results, engine.stats()

    results, stats = asyncio.run(main())
    assert all(len([t for o in r for t in o.token_ids]) == 30 for r in results)
    assert stats.kv_blocks_used == 0 and stats.num_running == 0
