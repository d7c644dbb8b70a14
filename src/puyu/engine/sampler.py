"""Next tokens for a batch of sequences: per-row penalties, temperature, top-k/p, min-p, seeds, logprobs.

The order of operations is the reference `TokenSampler`'s, so a greedy or seeded request picks the same
tokens here as in reference generation: vocabulary limit, logits processors, logit bias, min-tokens
masking, penalties; greedy rows take the argmax, the others go through temperature/top-k/top-p/min-p and
one multinomial draw (with the request's own generator when it has a seed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from puyu.generation.sampling import (
    SamplingParams,
    apply_penalties,
    effective_top_k,
    filter_logits,
    generator_seed,
)


@dataclass
class SamplingState:
    """What one request's sampling carries from step to step.

    Args:
        params: the request's parameters.
        prompt_ids: its prompt (the repetition penalty covers it).
        stop_ids: ids that end it (masked until `params.min_tokens` tokens exist).
        vocab_size, device: logits geometry.
    """

    params: SamplingParams
    prompt_ids: list[int]
    stop_ids: list[int]
    vocab_size: int
    device: torch.device
    output_ids: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None
    seen: torch.Tensor | None = None  # [V] bool: prompt or output (repetition penalty)
    counts: torch.Tensor | None = None  # [V] float: occurrences in the output
    bias_ids: torch.Tensor | None = None  # [B] long: `params.logit_bias` keys, built once
    bias_values: torch.Tensor | None = None  # [B] float: their values

    def __post_init__(self) -> None:
        p = self.params
        if p.logit_bias:
            self.bias_ids = torch.tensor(list(p.logit_bias), dtype=torch.long, device=self.device)
            self.bias_values = torch.tensor(list(p.logit_bias.values()), dtype=torch.float32, device=self.device)
        if p.seed is not None:
            self.generator = torch.Generator(device=self.device).manual_seed(generator_seed(p.seed))
        self.penalised = p.repetition_penalty != 1 or p.presence_penalty != 0 or p.frequency_penalty != 0
        if self.penalised:
            self.seen = torch.zeros(self.vocab_size, dtype=torch.bool, device=self.device)
            self.seen[torch.tensor(self.prompt_ids, dtype=torch.long, device=self.device)] = True
            self.counts = torch.zeros(self.vocab_size, dtype=torch.float32, device=self.device)

    def record(self, token: int) -> None:
        self.output_ids.append(token)
        if self.seen is not None and self.counts is not None:
            self.seen[token] = True
            self.counts[token] += 1


@dataclass
class Sample:
    """A picked token, with its logprob and alternatives when asked."""

    token: int
    logprob: float | None = None
    top: list[tuple[int, float]] = field(default_factory=list)


class Sampler:
    """Samples one token per row of a logits batch.

    Args:
        vocab_limit: ids at or above this are never produced (embedding rows without a token).
        seed: seed of the generator shared by requests without their own seed.
        device: where logits live.
    """

    def __init__(self, vocab_limit: int | None, seed: int, device: torch.device) -> None:
        self.vocab_limit = vocab_limit
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def __call__(self, logits: torch.Tensor, states: list[SamplingState]) -> list[Sample]:
        """Pick the next token of each row of logits [R, V] and record it in the row's state."""
        logits = self.process(logits, states)
        rows = len(states)
        device = logits.device
        greedy = torch.tensor([s.params.greedy for s in states], device=device)
        tokens = logits.argmax(dim=-1)
        if not bool(greedy.all()):
            one = lambda f, dtype=torch.float32: torch.tensor([f(s.params) for s in states], dtype=dtype, device=device)  # noqa: E731
            filtered = filter_logits(
                logits,
                one(lambda p: max(p.temperature, 1e-5)),
                one(lambda p: effective_top_k(p.top_k, logits.shape[-1]), torch.long),
                one(lambda p: p.top_p),
                one(lambda p: p.min_p),
            )
            logits = torch.where(greedy[:, None], logits, filtered)
            probs = logits.softmax(dim=-1)
            shared = [i for i in range(rows) if not states[i].params.greedy and states[i].generator is None]
            if shared:
                index = torch.tensor(shared, device=device)
                tokens[index] = torch.multinomial(probs[index], 1, generator=self.generator)[:, 0]
            for i, state in enumerate(states):
                if not state.params.greedy and state.generator is not None:
                    tokens[i] = torch.multinomial(probs[i : i + 1], 1, generator=state.generator)[0, 0]
        samples = [Sample(int(t)) for t in tokens.tolist()]
        wants = [i for i, s in enumerate(states) if s.params.logprobs]
        if wants:
            index = torch.tensor(wants, device=device)
            logprobs = logits[index].log_softmax(dim=-1)
            chosen = logprobs.gather(1, tokens[index][:, None])[:, 0].tolist()
            width = max(states[i].params.top_logprobs for i in wants)
            top_values, top_ids = logprobs.topk(width, dim=-1) if width else (None, None)
            for j, i in enumerate(wants):
                samples[i].logprob = chosen[j]
                k = states[i].params.top_logprobs
                if k and top_values is not None and top_ids is not None:
                    samples[i].top = list(zip(top_ids[j, :k].tolist(), top_values[j, :k].tolist(), strict=True))
        for state, sample in zip(states, samples, strict=True):
            state.record(sample.token)
        return samples

    def process(self, logits: torch.Tensor, states: list[SamplingState]) -> torch.Tensor:
        """Everything before the greedy/sampling split: vocabulary limit, processors, bias, min tokens, penalties."""
        logits = logits.float()
        if self.vocab_limit is not None and self.vocab_limit < logits.shape[-1]:
            logits[:, self.vocab_limit :] = float("-inf")
        for i, state in enumerate(states):
            p = state.params
            for processor in p.logits_processors:
                logits[i] = processor(list(state.output_ids), logits[i])
            if state.bias_ids is not None and state.bias_values is not None:
                logits[i, state.bias_ids] += state.bias_values
            if len(state.output_ids) < p.min_tokens and state.stop_ids:
                held = logits[i].clone()
                held[state.stop_ids] = float("-inf")
                # min_tokens gives way when only a stop token is left (JSON mode closing its object at the
                # budget's end): a row with nothing to sample would fail the request.
                if bool((held > float("-inf")).any()):
                    logits[i] = held
        penalised = [i for i, s in enumerate(states) if s.penalised]
        if penalised:
            index = torch.tensor(penalised, device=logits.device)
            chosen = [states[i] for i in penalised]
            param = lambda f: torch.tensor([f(s.params) for s in chosen], device=logits.device)  # noqa: E731
            logits[index] = apply_penalties(
                logits[index],
                torch.stack([s.seen for s in chosen]),  # type: ignore[misc]
                torch.stack([s.counts for s in chosen]),  # type: ignore[misc]
                param(lambda p: p.repetition_penalty),
                param(lambda p: p.presence_penalty),
                param(lambda p: p.frequency_penalty),
            )
        return logits
