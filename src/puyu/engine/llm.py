"""LLM: the offline API over the engine (batched generation and chat, with streaming)."""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from puyu.engine.config import EngineConfig
from puyu.engine.engine import LLMEngine
from puyu.engine.outputs import RequestOutput, TokenLogprob
from puyu.errors import PuyuError
from puyu.generation.sampling import SamplingParams


@dataclass
class CompletionOutput:
    """A finished request.

    `token_ids` include a final stop token when one ended generation; `text` never contains it.
    For chat, `content` is the text with tool-call markup removed and `tool_calls` the parsed calls.
    """

    text: str
    token_ids: list[int]
    finish_reason: str
    logprobs: list[TokenLogprob] | None = None
    num_prompt_tokens: int = 0
    num_cached_tokens: int = 0
    tool_calls: list[dict] = field(default_factory=list)
    content: str = ""
    stop_reason: str | int | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None


class LLM:
    """A model folder served in-process through the continuous-batching engine.

    Args:
        model_dir: HF model folder.
        config: engine settings; keyword arguments override its fields (e.g. `max_num_seqs=8`).
        template: (keyword) a built-in chat template name instead of the folder's own.
    """

    def __init__(
        self, model_dir: str | os.PathLike[str], config: EngineConfig | None = None, **engine_kwargs: Any
    ) -> None:
        template = engine_kwargs.pop("template", None)
        config = dataclasses.replace(config or EngineConfig(), **engine_kwargs)
        self.engine = LLMEngine.from_pretrained(model_dir, config, template=template)
        self.tokenizer = self.engine.tokenizer
        self._ids = itertools.count()

    # ---- plain prompts --------------------------------------------------------------------------

    def generate(
        self,
        prompts: str | Sequence[str] | Sequence[Sequence[int]],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        progress: bool = False,
    ) -> list[CompletionOutput]:
        """Complete every prompt (text, or token ids) and return the results in order."""
        return self._run_all(self._prompt_ids(prompts), params, progress)

    def stream(self, prompt: str | Sequence[int], params: SamplingParams | None = None) -> Iterator[RequestOutput]:
        """Yield the request's outputs step by step; stopping early aborts the request."""
        (ids,) = self._prompt_ids([prompt] if isinstance(prompt, str) else [list(prompt)])
        yield from self._stream_ids(ids, params or SamplingParams())

    # ---- chat -----------------------------------------------------------------------------------

    def chat(
        self,
        messages: list[dict] | list[list[dict]],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        tools: list[dict] | None = None,
        progress: bool = False,
    ) -> list[CompletionOutput]:
        """Reply to one conversation or a list of them; tool calls are parsed when `tools` are offered.

        With a vision model, user messages may hold image parts: `{"type": "image_url", "image_url": {"url":
        "data:image/png;base64,..."}}` or `{"type": "image", "image": PIL image | file path | bytes}`.
        """
        conversations = [messages] if messages and isinstance(messages[0], dict) else list(messages)
        requests = [self.engine.chat_request(conv, tools) for conv in conversations]  # type: ignore[arg-type]
        prompts = [ids for ids, _ in requests]
        per_request = self._params_list(params, len(prompts))
        chat_params = [self.engine.chat_params(p) for p in per_request]
        results = self._run_all(prompts, chat_params, progress, images=[spans for _, spans in requests])
        template = self.engine.tool_template if tools else self.engine.template
        for result in results:
            result.content, result.tool_calls = template.parse_tool_calls(result.text) if tools else (result.text, [])
            if result.tool_calls:
                result.finish_reason = "tool_calls"
        return results

    def stream_chat(
        self, messages: list[dict], params: SamplingParams | None = None, *, tools: list[dict] | None = None
    ) -> Iterator[RequestOutput]:
        """Stream the assistant's reply (tool-call markup included); images as for `chat`."""
        ids, images = self.engine.chat_request(messages, tools)
        yield from self._stream_ids(ids, self.engine.chat_params(params or SamplingParams()), images)

    # ---- internals ------------------------------------------------------------------------------

    def _prompt_ids(self, prompts: str | Sequence[str] | Sequence[Sequence[int]]) -> list[list[int]]:
        if isinstance(prompts, str):
            prompts = [prompts]
        elif prompts and isinstance(prompts[0], int):
            prompts = [prompts]  # type: ignore[list-item]
        return [self.tokenizer.encode(p) if isinstance(p, str) else [int(t) for t in p] for p in prompts]

    @staticmethod
    def _params_list(params: SamplingParams | Sequence[SamplingParams] | None, count: int) -> list[SamplingParams]:
        if params is None or isinstance(params, SamplingParams):
            return [params or SamplingParams()] * count
        if len(params) != count:
            raise PuyuError(f"got {len(params)} sampling parameters for {count} prompts")
        return list(params)

    def _stream_ids(
        self, ids: list[int], params: SamplingParams, images: list | None = None
    ) -> Iterator[RequestOutput]:
        request_id = f"stream-{next(self._ids)}"
        self.engine.add_request(request_id, ids, params, images)
        finished = False
        try:
            while not finished and self.engine.has_unfinished_requests():
                for out in self.engine.step():
                    if out.request_id == request_id:
                        finished = out.finished
                        yield out
        finally:
            if not finished:
                self.engine.abort(request_id)

    def _run_all(
        self,
        prompts: list[list[int]],
        params: SamplingParams | Sequence[SamplingParams] | None,
        progress: bool,
        images: list[list] | None = None,
    ) -> list[CompletionOutput]:
        per_request = self._params_list(params, len(prompts))
        per_images = images or [[] for _ in prompts]
        ids = [f"batch-{next(self._ids)}" for _ in prompts]
        index = {request_id: i for i, request_id in enumerate(ids)}
        results = [CompletionOutput(text="", token_ids=[], finish_reason="length") for _ in prompts]
        try:
            for request_id, prompt, p, spans in zip(ids, prompts, per_request, per_images, strict=True):
                self.engine.add_request(request_id, prompt, p, spans)
            remaining = set(ids)
            with tqdm(total=len(ids), desc="generating", unit="req", disable=not progress) as bar:
                while remaining:
                    for out in self.engine.step():
                        if out.request_id not in index:
                            continue
                        result = results[index[out.request_id]]
                        _accumulate(result, out)
                        if out.finished:
                            remaining.discard(out.request_id)
                            bar.update(1)
        finally:
            for request_id in ids:
                self.engine.abort(request_id)
        return results


def _accumulate(result: CompletionOutput, out: RequestOutput) -> None:
    """Fold one step's output into the request's result."""
    result.text += out.text
    result.content = result.text
    result.token_ids.extend(out.token_ids)
    if out.logprobs is not None:
        result.logprobs = (result.logprobs or []) + out.logprobs
    if out.prompt_logprobs is not None:
        result.prompt_logprobs = out.prompt_logprobs
    result.num_prompt_tokens = out.num_prompt_tokens
    result.num_cached_tokens = out.num_cached_tokens
    if out.finished:
        result.finish_reason = out.finish_reason or "stop"
        result.stop_reason = out.stop_reason
