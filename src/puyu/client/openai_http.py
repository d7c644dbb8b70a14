"""Any OpenAI-compatible endpoint as a model client, through the official `openai` package: completions and
chat completions (tools, streaming, async) sent concurrently; log-likelihoods from the prompt-token logprobs
that `completions` returns with `echo=True`; embeddings."""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlparse

from puyu.client.base import ChatDelta, ChatResult, TaskUnsupported, ToolCall, default_chat
from puyu.errors import PuyuError, one_line
from puyu.generation.sampling import SamplingParams

T = TypeVar("T")
R = TypeVar("R")
NO_PROMPT_LOGPROBS = "this endpoint gives no prompt logprobs: log-likelihood tasks need them; generation tasks only"


class NoPromptLogprobs(TaskUnsupported):
    """The endpoint does not return log-probabilities of prompt tokens (completions with echo + logprobs)."""


def normalize_base_url(url: str) -> str:
    """'http://host:8000' → 'http://host:8000/v1' (the OpenAI client wants the API root)."""
    url = url.rstrip("/")
    return url + "/v1" if urlparse(url).path in ("", "/") else url


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the first stop string (endpoints accept only a few stops; the rest are applied here)."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]


class OpenAIModel:
    """An OpenAI-compatible HTTP endpoint.

    Args:
        base_url: e.g. http://localhost:8000/v1 (/v1 is added to a bare host).
        api_key: bearer token (default $OPENAI_API_KEY, else a placeholder for servers without auth).
        model: model name to request; default the first one the endpoint lists.
        concurrency: requests in flight at once.
        chat: use chat prompts by default (None: guessed from the model name).
        timeout: seconds per request.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        concurrency: int = 8,
        chat: bool | None = None,
        timeout: float = 600.0,
    ) -> None:
        import openai

        self.base_url = normalize_base_url(base_url)
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            timeout=timeout,
            max_retries=2,
        )
        listed: list[Any] = []
        try:
            listed = list(self.client.models.list())
        except openai.APIConnectionError as exc:
            raise PuyuError(f"{self.base_url}: cannot reach the endpoint ({one_line(exc)})") from None
        except openai.AuthenticationError:
            raise PuyuError(f"{self.base_url}: the endpoint refused the API key (give --api-key)") from None
        except openai.APIStatusError:
            listed = []  # some servers have no /models; then a model name is needed
        if model is None:
            if not listed:
                raise PuyuError(f"{self.base_url}: the endpoint lists no models; give --api-model NAME")
            model = listed[0].id
        self.model = model
        self.name = model.rstrip("/").rsplit("/", 1)[-1]
        self.model_id = f"{self.base_url}#{model}"
        entry = next((m for m in listed if m.id == model), None)
        self.max_length = int(getattr(entry, "max_model_len", None) or 1 << 30)
        self.is_chat = default_chat(self.name) if chat is None else chat
        self.concurrency = max(1, concurrency)
        self.calls = 0
        self._api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self._timeout = timeout
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        self.calls += 1
        if len(items) <= 1 or self.concurrency == 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    def _call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        with self._errors():
            return fn(model=self.model, **kwargs)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """The endpoint's failures as one-line `PuyuError`s naming the endpoint."""
        import openai

        try:
            yield
        except openai.APIConnectionError as exc:
            raise PuyuError(f"{self.base_url}: cannot reach the endpoint ({one_line(exc)})") from None
        except openai.APIStatusError as exc:
            raise PuyuError(f"{self.base_url}: request failed with HTTP {exc.status_code}: {one_line(exc)}") from None

    @staticmethod
    def _sampling(params: SamplingParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_tokens": params.max_tokens, "temperature": params.temperature}
        if params.top_p < 1:
            kwargs["top_p"] = params.top_p
        if params.stop:
            kwargs["stop"] = list(params.stop[:4])
        if params.seed is not None:
            kwargs["seed"] = params.seed
        return kwargs

    def generate(self, prompts: list[str], params: SamplingParams) -> list[str]:
        """Completions of plain-text prompts (the completions endpoint)."""

        def one(prompt: str) -> str:
            response = self._call(self.client.completions.create, prompt=prompt, **self._sampling(params))
            return cut_at_stop(response.choices[0].text or "", params.stop)

        return self._map(one, prompts)

    def chat(self, conversations: list[list[dict]], params: SamplingParams) -> list[str]:
        """Assistant replies (the chat completions endpoint)."""

        def one(messages: list[dict]) -> str:
            response = self._call(self.client.chat.completions.create, messages=messages, **self._sampling(params))
            return cut_at_stop(response.choices[0].message.content or "", params.stop)

        return self._map(one, conversations)

    def _echo(self, text: str) -> Any:
        """The logprobs of `text`'s own tokens: completions with echo, one extra token generated."""
        import openai

        try:
            response = self.client.completions.create(
                model=self.model, prompt=text, max_tokens=1, temperature=0, echo=True, logprobs=1
            )
        except openai.BadRequestError as exc:
            message = one_line(exc)
            if "echo" in message.lower() or "logprob" in message.lower():
                raise NoPromptLogprobs(f"{self.base_url}: {NO_PROMPT_LOGPROBS} ({message})") from None
            raise PuyuError(f"{self.base_url}: request failed: {message}") from None
        except openai.APIConnectionError as exc:
            raise PuyuError(f"{self.base_url}: cannot reach the endpoint ({one_line(exc)})") from None
        except openai.APIStatusError as exc:
            raise PuyuError(f"{self.base_url}: request failed with HTTP {exc.status_code}: {one_line(exc)}") from None
        logprobs = response.choices[0].logprobs
        offsets = getattr(logprobs, "text_offset", None) if logprobs is not None else None
        values = getattr(logprobs, "token_logprobs", None) if logprobs is not None else None
        if not offsets or not values or len(offsets) != len(values) or not response.choices[0].text.startswith(text):
            raise NoPromptLogprobs(f"{self.base_url}: {NO_PROMPT_LOGPROBS}")
        return logprobs

    @staticmethod
    def _text_positions(logprobs: Any, text: str) -> list[int]:
        """Each token's character offset into the echoed text.

        Servers count leading special tokens (BOS) in `text_offset` though the text leaves them out (vLLM
        does); the offsets are shifted so that the first token found at the start of the text is at 0.
        """
        shift = 0
        for token, offset in zip(logprobs.tokens, logprobs.text_offset, strict=True):
            if token and text.startswith(token):
                shift = offset
                break
        return [offset - shift for offset in logprobs.text_offset]

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """Sum logprob of each continuation's tokens (those starting at or after the context's end)."""

        def one(request: tuple[str, str]) -> tuple[float, bool]:
            context, continuation = request
            whole = context + continuation
            logprobs = self._echo(whole)
            total, greedy = 0.0, True
            for i, offset in enumerate(self._text_positions(logprobs, whole)):
                if offset < len(context) or offset >= len(whole):
                    continue
                value = logprobs.token_logprobs[i]
                if value is None:
                    raise NoPromptLogprobs(f"{self.base_url}: {NO_PROMPT_LOGPROBS}")
                total += value
                top = (logprobs.top_logprobs or [None] * (i + 1))[i] or {}
                if top and max(top, key=top.get) != logprobs.tokens[i]:
                    greedy = False
            return total, greedy

        return self._map(one, requests)

    def perplexity(self, texts: list[str]) -> list[tuple[float, int]]:
        """(sum of negative logprobs, tokens) of each text's tokens but the first."""

        def one(text: str) -> tuple[float, int]:
            logprobs = self._echo(text)
            offsets = self._text_positions(logprobs, text)
            scored = [
                v for v, o in zip(logprobs.token_logprobs, offsets, strict=True) if v is not None and o < len(text)
            ]
            return -sum(scored), len(scored)

        return self._map(one, texts)

    # ---- chat with tools, streaming, raw text, embeddings ---------------------------------------

    def _chat_kwargs(self, messages: list[dict], params: SamplingParams, tools: list[dict] | None) -> dict[str, Any]:
        kwargs = {"model": self.model, "messages": messages, **self._sampling(params)}
        if tools:
            kwargs["tools"] = tools
        return kwargs

    @staticmethod
    def _result(response: Any) -> ChatResult:
        choice = response.choices[0]
        calls = [ToolCall.from_openai(call.model_dump()) for call in choice.message.tool_calls or []]
        usage = response.usage
        return ChatResult(
            content=choice.message.content or "",
            tool_calls=calls,
            finish_reason=choice.finish_reason or "stop",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )

    def complete_chat(
        self, messages: list[dict], params: SamplingParams, tools: list[dict] | None = None
    ) -> ChatResult:
        """One assistant turn; with `tools`, the calls the endpoint parsed."""
        self.calls += 1
        with self._errors():
            return self._result(self.client.chat.completions.create(**self._chat_kwargs(messages, params, tools)))

    def stream_chat(
        self, messages: list[dict], params: SamplingParams, tools: list[dict] | None = None
    ) -> Iterator[ChatDelta]:
        """The turn as the endpoint streams it; the last delta has the assembled tool calls."""
        self.calls += 1
        assembler = _CallAssembler()
        with self._errors():
            stream = self.client.chat.completions.create(
                **self._chat_kwargs(messages, params, tools), stream=True, stream_options={"include_usage": True}
            )
            try:
                for chunk in stream:
                    delta = assembler.feed(chunk)
                    if delta is not None:
                        yield delta
            finally:
                stream.close()
        yield assembler.finish()

    def _async(self) -> Any:
        """The async client of the running event loop (its connection pool belongs to that loop)."""
        import openai

        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            client = self._async_clients[loop] = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self._api_key, timeout=self._timeout, max_retries=2
            )
        return client

    async def acomplete_chat(
        self, messages: list[dict], params: SamplingParams, tools: list[dict] | None = None
    ) -> ChatResult:
        """`complete_chat` on the event loop (concurrent calls are concurrent requests)."""
        self.calls += 1
        with self._errors():
            response = await self._async().chat.completions.create(**self._chat_kwargs(messages, params, tools))
        return self._result(response)

    async def astream_chat(
        self, messages: list[dict], params: SamplingParams, tools: list[dict] | None = None
    ) -> AsyncIterator[ChatDelta]:
        """`stream_chat` on the event loop; closing it early closes the HTTP stream."""
        self.calls += 1
        assembler = _CallAssembler()
        with self._errors():
            stream = await self._async().chat.completions.create(
                **self._chat_kwargs(messages, params, tools), stream=True, stream_options={"include_usage": True}
            )
            try:
                async for chunk in stream:
                    delta = assembler.feed(chunk)
                    if delta is not None:
                        yield delta
            finally:
                await stream.close()
        yield assembler.finish()

    def complete_text(self, prompt: str, params: SamplingParams) -> str:
        """A raw prompt's completion (the completions endpoint)."""
        return self.generate([prompt], params)[0]

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Vectors from the endpoint's /embeddings, in order."""
        self.calls += 1
        with self._errors():
            response = self.client.embeddings.create(model=self.model, input=texts)
        return [item.embedding for item in sorted(response.data, key=lambda item: item.index)]


class _CallAssembler:
    """Streamed chat chunks → content deltas, with tool-call fragments joined by their index."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: Any = None

    def feed(self, chunk: Any) -> ChatDelta | None:
        if chunk.usage is not None:
            self.usage = chunk.usage
        if not chunk.choices:
            return None
        choice = chunk.choices[0]
        self.finish_reason = choice.finish_reason or self.finish_reason
        for fragment in choice.delta.tool_calls or []:
            call = self.calls.setdefault(fragment.index, {"id": None, "function": {"name": "", "arguments": ""}})
            call["id"] = fragment.id or call["id"]
            if fragment.function is not None:
                call["function"]["name"] += fragment.function.name or ""
                call["function"]["arguments"] += fragment.function.arguments or ""
        return ChatDelta(content=choice.delta.content) if choice.delta.content else None

    def finish(self) -> ChatDelta:
        calls = [ToolCall.from_openai(self.calls[i]) for i in sorted(self.calls)]
        usage = self.usage
        return ChatDelta(
            tool_calls=calls,
            finish_reason=self.finish_reason or ("tool_calls" if calls else "stop"),
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )
