"""Sampling filters and penalties against transformers' logits processors; stop-string streaming."""

from __future__ import annotations

import pytest
import torch

from puyu.errors import PuyuError
from puyu.generation.generate import generate_tokens, stream_tokens
from puyu.generation.sampling import SamplingParams, TokenSampler, apply_penalties, filter_logits
from puyu.generation.stop_strings import StopStringMatcher
from puyu.model import ModelConfig
from puyu.model.init import random_model

generation = pytest.importorskip("transformers.generation.logits_process")


def _logits(rows: int = 4, vocab: int = 50, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * 3


def _rows(value, rows: int = 4, dtype=torch.float32) -> torch.Tensor:
    return torch.full((rows,), value, dtype=dtype)


def _same_support(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
    finite = ~torch.isinf(ours)
    assert torch.allclose(ours[finite], theirs[finite], atol=1e-6)


@pytest.mark.parametrize("k", [1, 5, 49])
def test_top_k_matches_transformers(k: int):
    logits = _logits()
    ours = filter_logits(logits, _rows(0.7), _rows(k, dtype=torch.long), _rows(1.0), _rows(0.0))
    theirs = generation.TopKLogitsWarper(k)(None, generation.TemperatureLogitsWarper(0.7)(None, logits.clone()))
    _same_support(ours, theirs)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_top_p_matches_transformers(p: float):
    logits = _logits(seed=1)
    ours = filter_logits(logits, _rows(1.0), _rows(0, dtype=torch.long), _rows(p), _rows(0.0))
    theirs = generation.TopPLogitsWarper(p)(None, logits.clone())
    _same_support(ours, theirs)


@pytest.mark.parametrize("min_p", [0.05, 0.3])
def test_min_p_matches_transformers(min_p: float):
    logits = _logits(seed=2)
    ours = filter_logits(logits, _rows(1.0), _rows(0, dtype=torch.long), _rows(1.0), _rows(min_p))
    theirs = generation.MinPLogitsWarper(min_p)(None, logits.clone())
    _same_support(ours, theirs)


def test_per_row_parameters_are_independent():
    logits = _logits(rows=2, seed=3)
    top_k = torch.tensor([1, 0])
    out = filter_logits(logits, _rows(1.0, 2), top_k, _rows(1.0, 2), _rows(0.0, 2))
    assert int((~torch.isinf(out[0])).sum()) == 1
    assert not torch.isinf(out[1]).any()


def test_repetition_penalty_matches_transformers():
    logits = _logits(rows=1, seed=4)
    history = torch.tensor([[3, 7, 7, 11]])
    seen = torch.zeros_like(logits, dtype=torch.bool)
    seen[0, history[0]] = True
    zeros = torch.zeros_like(logits)
    ours = apply_penalties(logits, seen, zeros, _rows(1.3, 1), _rows(0.0, 1), _rows(0.0, 1))
    theirs = generation.RepetitionPenaltyLogitsProcessor(1.3)(history, logits.clone())
    assert torch.allclose(ours, theirs)


def test_presence_and_frequency_penalties_follow_openai_formula():
    logits = torch.zeros(1, 5)
    counts = torch.tensor([[0.0, 1.0, 3.0, 0.0, 0.0]])
    out = apply_penalties(logits, counts > 0, counts, _rows(1.0, 1), _rows(0.5, 1), _rows(0.25, 1))
    assert out.tolist() == [[0.0, -0.75, -1.25, 0.0, 0.0]]


def test_seeded_sampling_is_reproducible_and_seed_dependent():
    config = ModelConfig.from_name("llama-tiny", vocab_size=64)
    model = random_model(config, seed=0, std=0.5)
    run = lambda seed: generate_tokens(  # noqa: E731
        model, [1, 2, 3], SamplingParams(max_tokens=24, temperature=1.0, top_p=0.9, seed=seed), ()
    )
    assert run(7) == run(7)
    assert run(7) != run(8)


def test_sampled_frequencies_follow_the_distribution():
    probs = torch.tensor([0.5, 0.3, 0.2, 0.0])
    sampler = TokenSampler(SamplingParams(temperature=1.0, seed=0), [0], 4, torch.device("cpu"))
    counts = torch.zeros(4)
    for _ in range(4000):
        sampler.output_counts.zero_()
        token, _ = sampler(probs.log())
        counts[token] += 1
    assert torch.allclose(counts / counts.sum(), probs, atol=0.03)


def test_stop_ids_and_length_finish_reasons():
    config = ModelConfig.from_name("llama-tiny", vocab_size=64)
    model = random_model(config, seed=1, std=0.5)
    steps = list(stream_tokens(model, [5, 6], SamplingParams(max_tokens=5, temperature=0)))
    assert [s.finish_reason for s in steps] == [None] * 4 + ["length"]
    first = steps[0].token_id
    stopped = list(stream_tokens(model, [5, 6], SamplingParams(max_tokens=5, temperature=0), eos_token_ids=[first]))
    assert len(stopped) == 1 and stopped[0].finish_reason == "stop"
    ignoring = SamplingParams(max_tokens=5, temperature=0, ignore_eos=True)
    assert len(list(stream_tokens(model, [5, 6], ignoring, eos_token_ids=[first]))) == 5


def test_greedy_logprobs_are_log_softmax_of_the_chosen_token():
    config = ModelConfig.from_name("llama-tiny", vocab_size=64)
    model = random_model(config, seed=2, std=0.5)
    step = next(iter(stream_tokens(model, [1, 2], SamplingParams(max_tokens=1, temperature=0, logprobs=True))))
    with torch.no_grad():
        expected = model(torch.tensor([[1, 2]]))[0, -1].log_softmax(-1)
    assert step.logprob == pytest.approx(float(expected.max()), abs=1e-5)
    assert step.token_id == int(expected.argmax())


@pytest.mark.parametrize(
    ("pieces", "stops", "emitted", "matched"),
    [
        (["Hello", " wor", "ld", "!"], ["world"], "Hello ", "world"),
        (["a", "b", "c"], ["bcd"], "abc", None),
        (["xx<", "|im", "_end|>yy"], ["<|im_end|>"], "xx", "<|im_end|>"),
        (["one two"], ["two", "one"], "", "one"),
    ],
)
def test_stop_string_matcher(pieces, stops, emitted, matched):
    matcher = StopStringMatcher(stops)
    out = "".join(matcher.feed(p) for p in pieces)
    if matcher.matched is None:
        out += matcher.flush()
    assert out == emitted
    assert matcher.matched == matched


def test_bad_sampling_parameters():
    with pytest.raises(PuyuError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(PuyuError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(PuyuError, match="max_tokens"):
        SamplingParams(max_tokens=0)


def test_vocab_limit_keeps_ids_inside_the_tokenizer():
    config = ModelConfig.from_name("llama-tiny", vocab_size=64)
    model = random_model(config, seed=3, std=0.5)
    params = SamplingParams(max_tokens=64, temperature=2.0, seed=0)
    unrestricted = generate_tokens(model, [1, 2], params)
    assert max(unrestricted) >= 16
    limited = [s.token_id for s in stream_tokens(model, [1, 2], params, vocab_limit=16)]
    assert max(limited) < 16
