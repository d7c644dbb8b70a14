"""The batched sampler against the reference TokenSampler on the same logits, row by row."""

from __future__ import annotations

import pytest
import torch

from puyu.engine.sampler import Sampler, SamplingState
from puyu.generation.sampling import SamplingParams, TokenSampler

VOCAB = 64
PARAMS = [
    SamplingParams(temperature=0),
    SamplingParams(temperature=0, repetition_penalty=1.4, logprobs=True, top_logprobs=4),
    SamplingParams(temperature=0.8, top_k=5, seed=1, logprobs=True),
    SamplingParams(temperature=1.3, top_p=0.7, seed=2, presence_penalty=0.6, logprobs=True, top_logprobs=2),
    SamplingParams(temperature=1.0, min_p=0.2, seed=3, frequency_penalty=0.9, repetition_penalty=1.2),
    SamplingParams(temperature=1.0, seed=4, logit_bias={3: 4.0, 9: -100.0}),
    SamplingParams(
        temperature=0.9, seed=5, logits_processors=[lambda ids, row: row.index_fill(0, torch.tensor([0, 1]), -1e9)]
    ),
]


def _states(prompts: list[list[int]]) -> list[SamplingState]:
    return [SamplingState(p, prompt, [], VOCAB, torch.device("cpu")) for p, prompt in zip(PARAMS, prompts, strict=True)]


def test_batched_rows_pick_what_the_reference_sampler_picks():
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, VOCAB, (6,), generator=gen).tolist() for _ in PARAMS]
    sampler = Sampler(vocab_limit=None, seed=0, device=torch.device("cpu"))
    states = _states(prompts)
    references = [
        TokenSampler(p, prompt, VOCAB, torch.device("cpu")) for p, prompt in zip(PARAMS, prompts, strict=True)
    ]
    for _ in range(25):
        logits = torch.randn(len(PARAMS), VOCAB, generator=gen) * 2
        samples = sampler(logits.clone(), states)
        for row, (sample, reference) in enumerate(zip(samples, references, strict=True)):
            token, logprob = reference(logits[row].clone())
            assert sample.token == token
            if PARAMS[row].logprobs:
                assert sample.logprob == pytest.approx(logprob, abs=1e-5)
    assert all(state.output_ids == ref.output_ids for state, ref in zip(states, references, strict=True))


def test_top_logprobs_are_the_best_entries_of_the_log_softmax():
    logits = torch.randn(2, VOCAB, generator=torch.Generator().manual_seed(1))
    params = [SamplingParams(temperature=0, logprobs=True, top_logprobs=5), SamplingParams(temperature=0)]
    states = [SamplingState(p, [1], [], VOCAB, torch.device("cpu")) for p in params]
    samples = Sampler(None, 0, torch.device("cpu"))(logits.clone(), states)
    expected = logits[0].log_softmax(-1).topk(5)
    assert [t for t, _ in samples[0].top] == expected.indices.tolist()
    assert [v for _, v in samples[0].top] == pytest.approx(expected.values.tolist(), abs=1e-6)
    assert samples[0].token == expected.indices[0] and samples[1].logprob is None and samples[1].top == []


def test_seeded_rows_are_reproducible_and_independent_of_batch_neighbours():
    logits = torch.randn(3, VOCAB, generator=torch.Generator().manual_seed(2))

    def draw(rows: list[int], seed_params: SamplingParams) -> list[int]:
        params = [seed_params if r == 0 else SamplingParams(temperature=1.0) for r in rows]
        states = [SamplingState(p, [0], [], VOCAB, torch.device("cpu")) for p in params]
        sampler = Sampler(None, seed=99, device=torch.device("cpu"))
        return [sampler(logits[rows].clone(), states)[0].token for _ in range(10)]

    seeded = SamplingParams(temperature=1.5, seed=7)
    assert draw([0], seeded) == draw([0, 1, 2], seeded) == draw([0, 2], seeded)


def test_vocab_limit_and_min_tokens_mask_ids():
    logits = torch.zeros(1, VOCAB)
    logits[0, 60] = 50.0
    logits[0, 7] = 40.0
    logits[0, 5] = 30.0
    state = SamplingState(SamplingParams(temperature=0, min_tokens=1), [1], [7], VOCAB, torch.device("cpu"))
    sampler = Sampler(vocab_limit=50, seed=0, device=torch.device("cpu"))
    assert sampler(logits.clone(), [state])[0].token == 5  # 60 is past the vocabulary, 7 stops too early
    assert sampler(logits.clone(), [state])[0].token == 7
