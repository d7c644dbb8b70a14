"""OpenAI requests → prompt token ids + `SamplingParams`; engine outputs → OpenAI response pieces."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from puyu.errors import PuyuError
from puyu.generation.sampling import SamplingParams
from puyu.serve.errors import APIError
from puyu.serve.json_mode import JsonLogitsProcessor
from puyu.serve.schemas import (
    ChatCompletionRequest,
    ChatLogprobs,
    ChatTokenLogprob,
    CompletionLogprobs,
    CompletionRequest,
    SamplingFields,
    TopLogprob,
)

# OpenAI's default for the legacy completions endpoint.
DEFAULT_COMPLETION_TOKENS = 16
# Tokens that top-k/top-p/min-p filtered out have logprob -inf, which JSON cannot carry; reported as this
# floor instead, as vLLM's OpenAI server does.
LOGPROB_FLOOR = -9999.0


def json_logprob(value: float) -> float:
    """A logprob as JSON carries it: finite, at least `LOGPROB_FLOOR` (NaN becomes the floor too)."""
    return value if value >= LOGPROB_FLOOR else LOGPROB_FLOOR  # NaN fails the comparison


@dataclass
class Prompt:
    """One prompt to run: its token ids and, for echo, its text."""

    ids: list[int]
    text: str


def completion_prompts(request: CompletionRequest, tokenizer: Any) -> list[Prompt]:
    """The prompts of a completions request: a string, strings, token ids, or lists of token ids."""
    raw = request.prompt
    if isinstance(raw, str):
        items: list[str | list[int]] = [raw]
    elif raw and all(isinstance(item, int) for item in raw):
        items = [list(raw)]  # type: ignore[arg-type]
    else:
        items = list(raw)  # type: ignore[arg-type]
    if not items:
        raise APIError(400, "prompt is empty", param="prompt")
    prompts = []
    for item in items:
        if isinstance(item, str):
            ids = tokenizer.encode(item)
            prompts.append(Prompt(ids, item))
        else:
            bad = [token for token in item if not 0 <= token < tokenizer.vocab_size]
            if bad:
                raise APIError(
                    400,
                    f"prompt token id {bad[0]} is outside the vocabulary (0..{tokenizer.vocab_size - 1})",
                    param="prompt",
                )
            prompts.append(Prompt(list(item), tokenizer.decode(item)))
        if not prompts[-1].ids:
            raise APIError(400, "prompt is empty", param="prompt")
    return prompts


def check_length(prompt_len: int, max_model_len: int, param: str = "prompt") -> None:
    """400 when the prompt leaves no room for even one new token."""
    if prompt_len >= max_model_len:
        raise APIError(
            400,
            f"this model's maximum context length is {max_model_len} tokens, but the prompt has {prompt_len} tokens "
            "(and at least one is needed for the reply)",
            param=param,
            code="context_length_exceeded",
        )


def output_budget(requested: int | None, prompt_len: int, max_model_len: int, default: int | None) -> int:
    """New tokens to ask the engine for: the request's, else `default`, capped by what the context leaves."""
    room = max_model_len - prompt_len
    wanted = requested if requested is not None else (default if default is not None else room)
    return max(0, min(wanted, room))


def _stop_strings(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else list(stop)
    if len(stops) > 16 or not all(stops):
        raise APIError(400, "stop must be at most 16 non-empty strings", param="stop")
    return stops


def _logit_bias(bias: dict[str, float] | None, vocab_size: int) -> dict[int, float]:
    out: dict[int, float] = {}
    for key, value in (bias or {}).items():
        try:
            token = int(key)
        except ValueError:
            raise APIError(400, f"logit_bias keys must be token ids, got {key!r}", param="logit_bias") from None
        if not 0 <= token < vocab_size:
            raise APIError(
                400, f"logit_bias token id {token} is outside the vocabulary (0..{vocab_size - 1})", param="logit_bias"
            )
        if not -100 <= value <= 100:
            raise APIError(400, f"logit_bias values must be in [-100, 100], got {value}", param="logit_bias")
        out[token] = float(value)
    return out


def sampling_params(
    request: SamplingFields,
    *,
    max_tokens: int,
    vocab_size: int,
    choice: int = 0,
    logprobs: bool = False,
    top_logprobs: int = 0,
    prompt_logprobs: int | None = None,
) -> SamplingParams:
    """The engine's parameters for choice number `choice` of a request (its seed is `seed + choice`)."""
    try:
        return SamplingParams(
            max_tokens=max(max_tokens, 1),  # max_tokens=0 (echo only) runs one step and drops its token
            temperature=request.temperature,
            top_k=request.top_k if request.top_k > 0 else 0,
            top_p=request.top_p,
            min_p=request.min_p,
            repetition_penalty=request.repetition_penalty,
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
            stop=_stop_strings(request.stop),
            stop_token_ids=list(request.stop_token_ids or []),
            ignore_eos=request.ignore_eos,
            seed=None if request.seed is None else request.seed + choice,
            logprobs=logprobs,
            top_logprobs=top_logprobs,
            prompt_logprobs=prompt_logprobs,
            logit_bias=_logit_bias(request.logit_bias, vocab_size),
            min_tokens=min(request.min_tokens, max_tokens),
        )
    except PuyuError as exc:
        raise APIError(400, str(exc)) from None


def completion_params(
    request: CompletionRequest, prompt: Prompt, engine: Any, choice: int
) -> tuple[SamplingParams, int]:
    """Engine parameters for one choice of a completions request, and how many tokens the reply may keep."""
    check_length(len(prompt.ids), engine.max_model_len)
    budget = output_budget(request.max_tokens, len(prompt.ids), engine.max_model_len, DEFAULT_COMPLETION_TOKENS)
    if budget == 0 and not request.echo:
        raise APIError(400, "max_tokens=0 is only meaningful with echo=true", param="max_tokens")
    wants = request.logprobs is not None
    params = sampling_params(
        request,
        max_tokens=budget,
        vocab_size=engine.tokenizer.vocab_size,
        choice=choice,
        logprobs=wants,
        top_logprobs=request.logprobs or 0,
        prompt_logprobs=request.logprobs if (wants and request.echo) else None,
    )
    return params, budget


def chat_params(
    request: ChatCompletionRequest, prompt_len: int, engine: Any, choice: int
) -> tuple[SamplingParams, int]:
    """Engine parameters for one choice of a chat request (the template's stops added)."""
    check_length(prompt_len, engine.max_model_len, "messages")
    requested = request.max_completion_tokens if request.max_completion_tokens is not None else request.max_tokens
    budget = output_budget(requested, prompt_len, engine.max_model_len, None)
    if budget == 0:
        raise APIError(400, "max_tokens must be at least 1", param="max_tokens")
    if request.top_logprobs and not request.logprobs:
        raise APIError(400, "top_logprobs needs logprobs=true", param="top_logprobs")
    params = sampling_params(
        request,
        max_tokens=budget,
        vocab_size=engine.tokenizer.vocab_size,
        choice=choice,
        logprobs=request.logprobs,
        top_logprobs=request.top_logprobs or 0,
    )
    params = engine.chat_params(params)
    if request.response_format is not None and request.response_format.type == "json_object":
        stop_ids = set(params.stop_token_ids) | set(engine.eos_token_ids)
        params.logits_processors = [*params.logits_processors, JsonLogitsProcessor(engine.tokenizer, stop_ids, budget)]
    return params, budget


def chat_tools(request: ChatCompletionRequest) -> list[dict[str, Any]] | None:
    """The tools to render for a request: none for tool_choice "none", only the named one for a named choice."""
    if not request.tools or request.tool_choice == "none":
        if request.tool_choice not in (None, "none", "auto"):
            raise APIError(400, "tool_choice names a tool but no tools were given", param="tool_choice")
        return None
    tools = [tool.model_dump(exclude_none=True) for tool in request.tools]
    choice = request.tool_choice
    if choice is not None and not isinstance(choice, str):
        named = [tool for tool in tools if tool["function"]["name"] == choice.function.name]
        if not named:
            raise APIError(
                400, f"tool_choice names {choice.function.name!r}, which is not in tools", param="tool_choice"
            )
        return named
    return tools


# ---------------------------------------------------------------------------------------------- logprobs


def completion_logprobs(
    entries: Sequence[Any | None],
    first_token: str | None = None,
    offset: int = 0,
) -> CompletionLogprobs:
    """The legacy `logprobs` object from `TokenLogprob`s; a None entry (the first prompt token) has no
    logprob, and `first_token` is its text. The chosen token is always in its `top_logprobs` dict, as in vLLM."""
    out = CompletionLogprobs()
    for entry in entries:
        out.text_offset.append(offset)
        if entry is None:
            token = first_token or ""
            out.tokens.append(token)
            out.token_logprobs.append(None)
            out.top_logprobs.append(None)
        else:
            token = entry.token
            out.tokens.append(token)
            out.token_logprobs.append(json_logprob(entry.logprob))
            top = {text: json_logprob(logprob) for _, text, logprob in entry.top}
            top.setdefault(token, json_logprob(entry.logprob))
            out.top_logprobs.append(top)
        offset += len(token)
    return out


def extend_completion_logprobs(target: CompletionLogprobs, more: CompletionLogprobs) -> None:
    """Append `more` after `target`, shifting its offsets to continue the text."""
    shift = (target.text_offset[-1] + len(target.tokens[-1])) if target.tokens else 0
    target.tokens.extend(more.tokens)
    target.token_logprobs.extend(more.token_logprobs)
    target.top_logprobs.extend(more.top_logprobs)
    target.text_offset.extend(offset + shift for offset in more.text_offset)


def chat_logprobs(entries: Sequence[Any], top_k: int, token_bytes: Callable[[int], bytes]) -> ChatLogprobs:
    """The chat `logprobs` object: each token with its bytes and its `top_k` alternatives.

    Args:
        entries: the engine's `TokenLogprob`s.
        top_k: alternatives to keep per token.
        token_bytes: token id -> the bytes it stands for (a piece of a multi-byte character is its byte,
            not the replacement character its text shows).
    """
    content = []
    for entry in entries:
        top = [
            TopLogprob(token=text, logprob=json_logprob(lp), bytes=list(token_bytes(token_id)))
            for token_id, text, lp in entry.top[:top_k]
        ]
        content.append(
            ChatTokenLogprob(
                token=entry.token,
                logprob=json_logprob(entry.logprob),
                bytes=list(token_bytes(entry.token_id)),
                top_logprobs=top,
            )
        )
    return ChatLogprobs(content=content)
