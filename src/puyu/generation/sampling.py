"""Sampling parameters and the logits → next-token step, batched over rows.

Order of operations follows transformers' `generate` (penalties, then temperature, top-k, top-p,
min-p), so a seeded run here and there draws from the same distribution.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from puyu.errors import PuyuError

# Dividing or multiplying float32 logits (|x| up to ~1e3) by a penalty outside this range overflows or
# flattens them to zero; vLLM and transformers leave it unbounded and produce inf/NaN there.
REPETITION_PENALTY_MIN = 0.01
REPETITION_PENALTY_MAX = 100.0
# torch.Generator.manual_seed takes [-2**63, 2**64); every integer seed maps into [0, 2**64).
_SEED_RANGE = 2**64


def generator_seed(seed: int) -> int:
    """A request's seed as a torch generator takes it: any integer, reduced modulo 2**64."""
    return int(seed) % _SEED_RANGE


def effective_top_k(top_k: int, vocab_size: int) -> int:
    """top_k as the sampler applies it: 0 (off) for -1, 0 or anything at or above the vocabulary size."""
    return top_k if 0 < top_k < vocab_size else 0


@dataclass
class SamplingParams:
    """How to pick tokens and when to stop.

    Args:
        max_tokens: most new tokens to generate.
        temperature: 0 means greedy; otherwise logits are divided by it.
        top_k: keep the k most likely tokens (0 or -1 = off; k above the vocabulary size keeps every token).
        top_p: keep the smallest set whose probability reaches p (1.0 = off).
        min_p: drop tokens less likely than min_p × the top token's probability (0 = off).
        repetition_penalty: >1 discourages every token already in prompt or output (CTRL-style); in
            [REPETITION_PENALTY_MIN, REPETITION_PENALTY_MAX], beyond which float32 logits overflow.
        presence_penalty: subtracted once from each token already generated (OpenAI semantics).
        frequency_penalty: subtracted per occurrence of each token already generated.
        stop: strings that end generation; they are not part of the returned text.
        stop_token_ids: ids that end generation, besides the model's EOS.
        ignore_eos: keep going past EOS (benchmarks).
        seed: makes sampling reproducible for this request; any integer (reduced modulo 2**64, the range
            torch generators take).
        logprobs: also return the chosen token's log-probability (under the processed distribution).
        top_logprobs: alternatives (0..20) returned with each generated token's logprob; needs `logprobs`.
        prompt_logprobs: None = off; k >= 0: the logprob of every prompt token plus k alternatives (engine only).
        logit_bias: token id -> value added to its logit before sampling.
        min_tokens: EOS and stop ids cannot end generation before this many tokens, unless no other token
            is allowed (e.g. JSON mode closing its object at the end of the budget) (engine only).
        logits_processors: per request, (output ids so far, logits row [V]) -> logits row, applied first
            (JSON mode); not compared nor serialised.
    """

    max_tokens: int = 256
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    prompt_logprobs: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    min_tokens: int = 0
    logits_processors: list[Callable[[list[int], torch.Tensor], torch.Tensor]] = field(
        default_factory=list, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        # JSON objects (OpenAI's logit_bias) arrive with string keys.
        self.logit_bias = {int(token): float(bias) for token, bias in self.logit_bias.items()}
        floats = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "min_p": self.min_p,
            "repetition_penalty": self.repetition_penalty,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
        }
        for name, value in floats.items():
            if not math.isfinite(value):
                raise PuyuError(f"{name} must be a finite number, got {value}")
        if not all(math.isfinite(bias) for bias in self.logit_bias.values()):
            raise PuyuError("logit_bias values must be finite numbers")
        checks = [
            (self.max_tokens >= 1, f"max_tokens must be at least 1, got {self.max_tokens}"),
            (self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}"),
            (self.top_k >= 0 or self.top_k == -1, f"top_k must be >= 0 (0 = off), got {self.top_k}"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (0 <= self.min_p <= 1, f"min_p must be in [0, 1], got {self.min_p}"),
            (
                REPETITION_PENALTY_MIN <= self.repetition_penalty <= REPETITION_PENALTY_MAX,
                f"repetition_penalty must be in [{REPETITION_PENALTY_MIN}, {REPETITION_PENALTY_MAX}], "
                f"got {self.repetition_penalty}",
            ),
            (-2 <= self.presence_penalty <= 2, f"presence_penalty must be in [-2, 2], got {self.presence_penalty}"),
            (-2 <= self.frequency_penalty <= 2, f"frequency_penalty must be in [-2, 2], got {self.frequency_penalty}"),
            (all(s for s in self.stop), "stop strings must not be empty"),
            (0 <= self.top_logprobs <= 20, f"top_logprobs must be in [0, 20], got {self.top_logprobs}"),
            (self.top_logprobs == 0 or self.logprobs, "top_logprobs needs logprobs=True"),
            (
                self.prompt_logprobs is None or 0 <= self.prompt_logprobs <= 20,
                f"prompt_logprobs must be None or in [0, 20], got {self.prompt_logprobs}",
            ),
            (self.min_tokens >= 0, f"min_tokens must be >= 0, got {self.min_tokens}"),
        ]
        for ok, message in checks:
            if not ok:
                raise PuyuError(message)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def apply_penalties(
    logits: torch.Tensor,
    seen: torch.Tensor,
    output_counts: torch.Tensor,
    repetition: torch.Tensor,
    presence: torch.Tensor,
    frequency: torch.Tensor,
) -> torch.Tensor:
    """Penalise repeated tokens, per row.

    Args:
        logits: [B, V] float.
        seen: [B, V] bool, tokens in prompt or output (repetition penalty).
        output_counts: [B, V] occurrences in the output so far (presence/frequency penalties).
        repetition, presence, frequency: [B] per-row penalties.
    """
    rep = repetition[:, None]
    penalised = torch.where(logits > 0, logits / rep, logits * rep)
    logits = torch.where(seen, penalised, logits)
    return logits - frequency[:, None] * output_counts - presence[:, None] * (output_counts > 0)


def filter_logits(
    logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, min_p: torch.Tensor
) -> torch.Tensor:
    """Temperature, top-k, top-p and min-p, per row; filtered entries become -inf.

    Args:
        logits: [B, V] float.
        temperature: [B] (> 0).
        top_k: [B] int, 0 = off.
        top_p: [B] float, 1 = off.
        min_p: [B] float, 0 = off.
    """
    logits = logits / temperature[:, None]
    vocab = logits.shape[-1]
    k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))
    if bool((k < vocab).any()):
        kth = logits.topk(int(k.max()), dim=-1).values.gather(-1, (k - 1)[:, None])
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if bool((top_p < 1).any()):
        sorted_logits, order = logits.sort(dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative <= (1 - top_p[:, None])
        drop_sorted[:, -1] = False  # always keep the most likely token
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    if bool((min_p > 0).any()):
        probs = logits.softmax(dim=-1)
        threshold = min_p[:, None] * probs.max(dim=-1, keepdim=True).values
        logits = logits.masked_fill(probs < threshold, float("-inf"))
    return logits


class TokenSampler:
    """Picks next tokens for one sequence, tracking what penalties need.

    Args:
        params: the request's sampling parameters.
        prompt_ids: the prompt (repetition penalty covers it, as in transformers).
        vocab_size: logits width.
        device: where the logits live.
    """

    def __init__(self, params: SamplingParams, prompt_ids: list[int], vocab_size: int, device: torch.device) -> None:
        self.params = params
        self.seen = torch.zeros(1, vocab_size, dtype=torch.bool, device=device)
        self.seen[0, torch.tensor(prompt_ids, dtype=torch.long, device=device)] = True
        self.output_counts = torch.zeros(1, vocab_size, dtype=torch.float32, device=device)
        self.output_ids: list[int] = []
        self._bias: tuple[torch.Tensor, torch.Tensor] | None = None  # logit_bias ids and values, built once
        if params.logit_bias:
            self._bias = (
                torch.tensor(list(params.logit_bias), dtype=torch.long, device=device),
                torch.tensor(list(params.logit_bias.values()), dtype=torch.float32, device=device),
            )
        self.generator: torch.Generator | None = None
        if params.seed is not None:
            self.generator = torch.Generator(device=device).manual_seed(generator_seed(params.seed))
        one = lambda value, dtype=torch.float32: torch.tensor([value], dtype=dtype, device=device)  # noqa: E731
        self._rep, self._presence, self._frequency = (
            one(params.repetition_penalty),
            one(params.presence_penalty),
            one(params.frequency_penalty),
        )
        self._temperature = one(max(params.temperature, 1e-5))
        self._top_k = one(effective_top_k(params.top_k, vocab_size), torch.long)
        self._top_p, self._min_p = one(params.top_p), one(params.min_p)
        self._penalised = (
            params.repetition_penalty != 1 or params.presence_penalty != 0 or params.frequency_penalty != 0
        )

    def __call__(self, logits: torch.Tensor) -> tuple[int, float | None]:
        """Next token id (and its log-probability if asked) from logits [V] or [1, V]."""
        logits = logits.reshape(1, -1).float()
        for processor in self.params.logits_processors:
            logits = processor(list(self.output_ids), logits[0]).reshape(1, -1)
        if self._bias is not None:
            logits = logits.index_add(1, self._bias[0], self._bias[1][None])
        if self._penalised:
            logits = apply_penalties(logits, self.seen, self.output_counts, self._rep, self._presence, self._frequency)
        if self.params.greedy:
            token = int(logits.argmax(dim=-1))
            logprobs = logits.log_softmax(dim=-1) if self.params.logprobs else None
        else:
            logits = filter_logits(logits, self._temperature, self._top_k, self._top_p, self._min_p)
            probs = logits.softmax(dim=-1)
            token = int(torch.multinomial(probs, 1, generator=self.generator))
            logprobs = logits.log_softmax(dim=-1) if self.params.logprobs else None
        self.seen[0, token] = True
        self.output_counts[0, token] += 1
        self.output_ids.append(token)
        return token, (float(logprobs[0, token]) if logprobs is not None else None)
