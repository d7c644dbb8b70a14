"""Reference generation: one sequence, a dense KV cache, plain torch.

This is the simple, obviously-correct path: prefill the prompt, then one forward per new token.
The serving engine is tested against it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from puyu.errors import PuyuError
from puyu.generation.sampling import SamplingParams, TokenSampler
from puyu.model.decoder import CausalLM
from puyu.model.kv_cache import DenseKVCache

FinishReason = Literal["stop", "length"]


@dataclass
class TokenStep:
    """One generated token; `finish_reason` is set on the last one."""

    token_id: int
    logprob: float | None = None
    finish_reason: FinishReason | None = None


@dataclass
class GenerationOutput:
    """A finished generation."""

    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    logprobs: list[float] | None = None
    prompt_tokens: int = 0
    stop_reason: str | int | None = field(default=None)


@torch.inference_mode()
def stream_tokens(
    model: CausalLM,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    eos_token_ids: Sequence[int] = (),
    vocab_limit: int | None = None,
) -> Iterator[TokenStep]:
    """Generate token by token.

    Args:
        model: the model.
        prompt_ids: the prompt's token ids (not empty).
        params: sampling and stopping rules (stop strings are applied by the text layer, which sees text).
        eos_token_ids: ids that end generation unless `params.ignore_eos`.
        vocab_limit: never produce ids at or above this (embedding rows the tokenizer has no token for).

    Yields:
        One `TokenStep` per new token; the stop token itself is yielded too, with finish_reason "stop".
    """
    prompt = list(prompt_ids)
    if not prompt:
        raise PuyuError("the prompt is empty")
    config = model.config
    vocab = config.vocab_size
    if max(prompt) >= vocab or min(prompt) < 0:
        raise PuyuError(f"prompt has token ids outside the model's vocabulary (0..{vocab - 1})")
    stop_ids = set(params.stop_token_ids) | (set() if params.ignore_eos else set(eos_token_ids))
    cache = DenseKVCache(
        config.num_layers,
        config.num_kv_heads,
        config.head_dim or 0,
        max_len=len(prompt) + params.max_tokens,
        dtype=model.dtype,
        device=model.device,
    )
    sampler = TokenSampler(params, prompt, vocab, model.device)
    inputs = torch.tensor([prompt], dtype=torch.long, device=model.device)
    for produced in range(1, params.max_tokens + 1):
        logits = model(inputs, cache=cache, last_only=True)[0, -1]
        if vocab_limit is not None and vocab_limit < vocab:
            logits[vocab_limit:] = float("-inf")
        token, logprob = sampler(logits)
        finish: FinishReason | None = None
        if token in stop_ids:
            finish = "stop"
        elif produced == params.max_tokens:
            finish = "length"
        yield TokenStep(token, logprob, finish)
        if finish:
            return
        inputs = torch.tensor([[token]], dtype=torch.long, device=model.device)


def generate_tokens(
    model: CausalLM, prompt_ids: Sequence[int], params: SamplingParams, eos_token_ids: Sequence[int] = ()
) -> list[int]:
    """All new token ids, including a final stop token if one ended generation."""
    return [step.token_id for step in stream_tokens(model, prompt_ids, params, eos_token_ids)]
