"""What the engine hands back: per-step request outputs, logprobs and engine statistics."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenLogprob:
    """A token's log-probability and the most likely alternatives at its position.

    Args:
        token_id: the token.
        token: its text (the tokenizer's piece decoded on its own).
        logprob: its log-probability.
        top: (token id, text, logprob) of the most likely tokens at this position, best first.
    """

    token_id: int
    token: str
    logprob: float
    top: list[tuple[int, str, float]] = field(default_factory=list)


@dataclass
class RequestOutput:
    """What one request produced in one engine step.

    Args:
        request_id: the request.
        token_ids: tokens new in this step (usually one).
        text: text new in this step: never broken UTF-8, never part of a stop string.
        logprobs: for `token_ids`, when the request asked for logprobs.
        prompt_logprobs: on the first output only, when asked; entry 0 is None (nothing predicts it).
        finished: the request is done.
        finish_reason: "stop" (EOS, stop id or stop string), "length", "abort", or "error" (the step
            failed for this request alone; `error` says why).
        stop_reason: the stop string or stop token id that ended it.
        num_prompt_tokens: prompt length.
        num_output_tokens: tokens generated so far.
        num_cached_tokens: prompt tokens served from the prefix cache.
        error: with finish_reason "error", what went wrong.
    """

    request_id: str
    token_ids: list[int]
    text: str
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None
    finished: bool = False
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    num_prompt_tokens: int = 0
    num_output_tokens: int = 0
    num_cached_tokens: int = 0
    error: str | None = None


@dataclass
class EngineStats:
    """A snapshot of the engine's queues and KV-cache use."""

    num_waiting: int
    num_running: int
    num_preempted_total: int
    kv_blocks_total: int
    kv_blocks_used: int
    kv_usage: float
    prefix_cache_hit_rate: float
