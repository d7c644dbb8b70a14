"""The FastAPI app: OpenAI's `/v1/models`, `/v1/completions`, `/v1/chat/completions`, plus `/health`
and `/metrics`, over an `AsyncLLMEngine`.

The app can start before the model is loaded: given a loader instead of an engine, it loads in a
background thread once the server runs, answering 503 until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from puyu.chat.tool_stream import ToolCallStream
from puyu.engine.async_engine import AsyncLLMEngine, QueueFullError, RequestFailedError
from puyu.engine.outputs import RequestOutput
from puyu.errors import PuyuError, one_line
from puyu.generation.sampling import SamplingParams
from puyu.serve import openai_adapter as adapter
from puyu.serve import search_api
from puyu.serve.errors import (
    ERROR_RESPONSES,
    APIError,
    error_body,
    install_error_handlers,
)
from puyu.serve.guard import STREAM_STATUS, GuardMiddleware
from puyu.serve.image_parts import check_image_parts, has_images
from puyu.serve.limits import DEFAULT_MAX_REQUEST_BYTES
from puyu.serve.metrics import RequestTimer, ServerMetrics
from puyu.serve.schemas import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatLogprobs,
    ChatMessage,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    DeltaFunctionCall,
    DeltaMessage,
    DeltaToolCall,
    FunctionCall,
    ModelCard,
    ModelList,
    RequestMessage,
    ToolCall,
    Usage,
    message_dicts,
    new_id,
)
from puyu.serve.served_models import ServedModels
from puyu.web import mount_web

logger = logging.getLogger("puyu.serve")

EngineLoader = Callable[[], AsyncLLMEngine]
T = TypeVar("T")


@dataclass
class ServerState:
    """What the request handlers share."""

    model_name: str
    api_key: str | None
    max_concurrency: int | None
    max_queue: int | None
    max_request_bytes: int | None = DEFAULT_MAX_REQUEST_BYTES
    trust_control_tokens: bool = False
    engine: AsyncLLMEngine | None = None
    load_error: str | None = None
    waiting: int = 0
    slots: asyncio.Semaphore | None = None
    adapters: tuple[str, ...] = ()
    metrics: ServerMetrics = field(init=False)
    closing: asyncio.Event = field(init=False)
    loop: asyncio.AbstractEventLoop | None = None  # the server's, once it runs
    max_token_chars: int | None = None  # longest text one token spells; set once the model is loaded

    served: ServedModels = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = ServerMetrics(lambda: self.engine.stats() if self.engine is not None else None)
        self.closing = asyncio.Event()
        self.served = ServedModels(self.model_name, self.adapters)

    def end_streams(self) -> None:
        """End every open stream now with an error event and `[DONE]` (shutdown's grace period is over).
        Safe to call from any thread."""
        if self.loop is None:
            self.closing.set()
        else:
            self.loop.call_soon_threadsafe(self.closing.set)

    def check_text_length(self, chars: int, max_model_len: int, param: str) -> None:
        """400 before tokenizing when `chars` characters cannot fit in `max_model_len` tokens whatever they say."""
        if self.max_token_chars is not None and chars > max_model_len * self.max_token_chars:
            raise APIError(
                400,
                f"this model's maximum context length is {max_model_len} tokens; the request's {chars} characters "
                f"are more than that many tokens can hold",
                param=param,
                code="context_length_exceeded",
            )

    def ready_engine(self) -> AsyncLLMEngine:
        if self.engine is not None:
            return self.engine
        if self.load_error is not None:
            raise APIError(500, f"the model failed to load: {self.load_error}", code="model_load_failed")
        raise APIError(503, "the model is still loading; retry shortly", code="model_loading")

    def check_model(self, name: str | None) -> None:
        """Choose the served model (base or adapter) a request names; 404 for another name."""
        self.served.select(name)

    @property
    def current_name(self) -> str:
        """The `model` name to answer with: the one the request being handled chose."""
        return self.served.current().name

    async def acquire(self) -> None:
        """Take one of `max_concurrency` slots; 429 when `max_queue` requests already wait for one."""
        if self.max_concurrency is None:
            return
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.max_concurrency)
        if self.slots.locked() and self.max_queue is not None and self.waiting >= self.max_queue:
            raise APIError(
                429, f"the server is busy ({self.waiting} requests waiting); retry shortly", code="queue_full"
            )
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1

    def release(self) -> None:
        if self.slots is not None:
            self.slots.release()


# ---------------------------------------------------------------------------------------------- engine streams


async def _start(
    engine: AsyncLLMEngine,
    request_id: str,
    prompt_ids: list[int],
    params: SamplingParams,
    timer: RequestTimer,
    adapter: str | None = None,
    images: list[Any] | None = None,
) -> AsyncIterator[RequestOutput]:
    """Add a request and wait for its first output, so that a full queue or a bad prompt becomes an
    HTTP error before any response is sent; the returned iterator yields every output, the first included."""
    stream = engine.generate(request_id, prompt_ids, params, images, adapter=adapter)
    try:
        first = await stream.__anext__()
    except QueueFullError as exc:
        await stream.aclose()
        raise APIError(429, f"the server is busy: {exc}; retry shortly", code="queue_full") from None
    except PuyuError as exc:
        await stream.aclose()
        raise APIError(400, str(exc)) from None
    except RequestFailedError as exc:
        await stream.aclose()
        logger.error("request %s failed: %s", request_id, exc)
        raise APIError(500, f"generation failed: {one_line(exc)}", code="generation_failed") from None
    except BaseException:
        await stream.aclose()
        raise
    return _chain(first, stream, timer)


async def _chain(
    first: RequestOutput, stream: AsyncIterator[RequestOutput], timer: RequestTimer
) -> AsyncIterator[RequestOutput]:
    try:
        timer.on_output(first)
        yield first
        if first.finished:
            return
        async for output in stream:
            timer.on_output(output)
            yield output
    except RequestFailedError as exc:
        logger.error("request %s failed: %s", first.request_id, exc)
        raise APIError(500, f"generation failed: {one_line(exc)}", code="generation_failed") from None
    finally:
        await stream.aclose()  # type: ignore[attr-defined]  # aborts the request if it is still running


async def _start_all(
    state: ServerState,
    engine: AsyncLLMEngine,
    base_id: str,
    runs: list[tuple[list[int], SamplingParams]],
    images: list[Any] | None = None,
) -> list[AsyncIterator[RequestOutput]]:
    """Start every engine request of an HTTP request at once (they prefill in the same steps); if one
    fails, the others are closed (aborted) and its error raised. `images`: the shared prompt's image spans."""
    lora = state.served.current().adapter
    starts = [
        _start(engine, f"{base_id}-{index}", prompt_ids, params, RequestTimer(state.metrics), lora, images)
        for index, (prompt_ids, params) in enumerate(runs)
    ]
    results = await asyncio.gather(*starts, return_exceptions=True)
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures:
        for result in results:
            if not isinstance(result, BaseException):
                await result.aclose()  # type: ignore[attr-defined]
        raise failures[0]
    return results  # type: ignore[return-value]


async def _merge(streams: list[AsyncIterator[RequestOutput]]) -> AsyncIterator[tuple[int, RequestOutput]]:
    """Outputs of several streams as they come, tagged with the stream's index; closing this closes them all."""
    if len(streams) == 1:
        try:
            async for output in streams[0]:
                yield 0, output
        finally:
            await streams[0].aclose()  # type: ignore[attr-defined]
        return
    queue: asyncio.Queue[tuple[int, RequestOutput | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[RequestOutput]) -> None:
        try:
            async for output in stream:
                await queue.put((index, output))
            await queue.put((index, None))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, which re-raises it
            await queue.put((index, exc))

    tasks = [asyncio.create_task(pump(index, stream)) for index, stream in enumerate(streams)]
    try:
        remaining = len(streams)
        while remaining:
            index, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in streams:
            await stream.aclose()  # type: ignore[attr-defined]


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run `work`, cancelling it when the client goes away (its engine requests are then aborted)."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise APIError(499, "the client disconnected")
    return task.result()


def _sse(payload: Any) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


async def _until_closing(state: ServerState, events: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """`events` until they end or the server ends open streams (raises APIError 503 then)."""
    closing = asyncio.ensure_future(state.closing.wait())
    step: asyncio.Future | None = None
    try:
        while True:
            step = asyncio.ensure_future(anext(events))  # type: ignore[arg-type]
            await asyncio.wait({step, closing}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                raise APIError(503, "the server is shutting down; the reply was cut short", code="server_shutdown")
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            step = None
            yield item
    finally:
        closing.cancel()
        if step is not None and not step.done():
            # Cancelled inside its pending step, the generator runs its own cleanup (aborting its engine
            # requests); closing it from here would race that step.
            step.cancel()
        else:
            await events.aclose()  # type: ignore[attr-defined]


async def _sse_stream(state: ServerState, request: Request, events: AsyncIterator[Any]) -> AsyncIterator[str]:
    """SSE framing, `data: [DONE]` at the end, and an error event (then `[DONE]`) if the engine fails
    mid-stream or the server shuts down; the failure is what `/metrics` counts the request under."""
    guarded = _until_closing(state, events)
    try:
        async for event in guarded:
            yield _sse(event)
    except (asyncio.CancelledError, GeneratorExit):
        raise
    except APIError as exc:
        request.scope[STREAM_STATUS] = exc.status
        yield _sse(error_body(exc.status, exc.message, code=exc.code))
    except Exception as exc:
        logger.exception("stream failed")
        request.scope[STREAM_STATUS] = 500
        yield _sse(error_body(500, f"generation failed: {one_line(exc)}", code="generation_failed"))
    finally:
        await guarded.aclose()  # type: ignore[attr-defined]
    yield _sse("[DONE]")


def _usage(prompt_tokens: int, completion_tokens: int, cached: int = 0) -> Usage:
    details = {"cached_tokens": cached} if cached else None
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        prompt_tokens_details=details,
    )


# ---------------------------------------------------------------------------------------------- completions


@dataclass
class _Choice:
    """One choice being collected."""

    text: list[str] = field(default_factory=list)
    logprobs: list[Any] = field(default_factory=list)
    prompt_logprobs: list[Any] | None = None
    finish_reason: str | None = None
    stop_reason: str | int | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0

    def add(self, output: RequestOutput) -> None:
        self.text.append(output.text)
        self.logprobs.extend(output.logprobs or [])
        if output.prompt_logprobs is not None:
            self.prompt_logprobs = output.prompt_logprobs
        self.prompt_tokens = output.num_prompt_tokens
        self.output_tokens = output.num_output_tokens
        self.cached_tokens = output.num_cached_tokens
        if output.finished:
            self.finish_reason, self.stop_reason = output.finish_reason, output.stop_reason


def _echo_logprobs(prompt: adapter.Prompt, entries: list[Any] | None, tokenizer: Any) -> Any:
    first = tokenizer.decode(prompt.ids[:1]) if prompt.ids else ""
    return adapter.completion_logprobs(entries or [None] * len(prompt.ids), first_token=first)


async def completions(state: ServerState, body: CompletionRequest, request: Request) -> Response:
    state.check_model(body.model)
    engine = state.ready_engine()
    llm = engine.engine
    if body.suffix:
        raise APIError(400, "suffix is not supported", param="suffix")
    texts = [body.prompt] if isinstance(body.prompt, str) else [p for p in body.prompt if isinstance(p, str)]
    state.check_text_length(max(map(len, texts), default=0), llm.max_model_len, "prompt")
    # Tokenizing a long prompt takes long enough to stall every other client if done on the event loop.
    prompts = await asyncio.to_thread(adapter.completion_prompts, body, llm.tokenizer)
    runs: list[tuple[list[int], SamplingParams]] = []
    slots: list[tuple[adapter.Prompt, int]] = []  # per run: its prompt and how many tokens it may keep
    for prompt in prompts:
        for choice in range(body.n):
            params, budget = adapter.completion_params(body, prompt, llm, choice)
            runs.append((prompt.ids, params))
            slots.append((prompt, budget))
    request_id = new_id("cmpl")
    result = await _generate(
        state,
        request,
        request_id,
        runs,
        (lambda streams: _completion_events(state, body, request_id, slots, streams, llm.tokenizer))
        if body.stream
        else None,
    )
    if isinstance(result, Response):
        return result
    choices = result
    out = []
    for index, (choice, (prompt, budget)) in enumerate(zip(choices, slots, strict=True)):
        keep = budget > 0
        text = "".join(choice.text) if keep else ""
        logprobs = None
        if body.logprobs is not None:
            generated = adapter.completion_logprobs(choice.logprobs if keep else [])
            if body.echo:
                logprobs = _echo_logprobs(prompt, choice.prompt_logprobs, llm.tokenizer)
                adapter.extend_completion_logprobs(logprobs, generated)
            else:
                logprobs = generated
        finish = choice.finish_reason if keep else "length"
        out.append(
            CompletionChoice(
                index=index,
                text=(prompt.text if body.echo else "") + text,
                logprobs=logprobs,
                finish_reason=finish,
                stop_reason=choice.stop_reason if keep else None,
            )
        )
    prompt_tokens = sum(choices[i * body.n].prompt_tokens for i in range(len(prompts)))
    completion_tokens = sum(c.output_tokens if budget else 0 for c, (_, budget) in zip(choices, slots, strict=True))
    cached = sum(choices[i * body.n].cached_tokens for i in range(len(prompts)))
    response = CompletionResponse(
        id=request_id, model=state.current_name, choices=out, usage=_usage(prompt_tokens, completion_tokens, cached)
    )
    return JSONResponse(response.model_dump())


async def _collect(
    state: ServerState,
    engine: AsyncLLMEngine,
    request_id: str,
    runs: list[tuple[list[int], SamplingParams]],
    images: list[Any] | None = None,
) -> list[_Choice]:
    streams = await _start_all(state, engine, request_id, runs, images)
    choices = [_Choice() for _ in runs]
    merged = _merge(streams)
    try:
        async for index, output in merged:
            choices[index].add(output)
    finally:
        await merged.aclose()  # type: ignore[attr-defined]
    return choices


async def _generate(
    state: ServerState,
    request: Request,
    request_id: str,
    runs: list[tuple[list[int], SamplingParams]],
    events: Callable[[list[AsyncIterator[RequestOutput]]], AsyncIterator[Any]] | None,
    images: list[Any] | None = None,
) -> list[_Choice] | Response:
    """Run a request's engine requests: collected into choices, or (given `events`) as an SSE response
    that starts once every request has its first output."""
    engine = state.ready_engine()
    await state.acquire()
    handed_over = False
    try:
        if events is None:
            return await _unless_disconnected(request, _collect(state, engine, request_id, runs, images))
        streams = await _unless_disconnected(request, _start_all(state, engine, request_id, runs, images))
        handed_over = True  # the stream gives the slot back when it ends
        body = _sse_stream(state, request, _releasing(state, events(streams)))
        return StreamingResponse(body, media_type="text/event-stream")
    finally:
        if not handed_over:
            state.release()


async def _releasing(state: ServerState, events: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """`events`, giving the request's concurrency slot back when the stream ends."""
    try:
        async for event in events:
            yield event
    finally:
        state.release()
        await events.aclose()  # type: ignore[attr-defined]


async def _completion_events(
    state: ServerState,
    body: CompletionRequest,
    request_id: str,
    slots: list[tuple[adapter.Prompt, int]],
    streams: list[AsyncIterator[RequestOutput]],
    tokenizer: Any,
) -> AsyncIterator[dict]:
    choices = [_Choice() for _ in slots]
    echoed = [False] * len(slots)
    merged = _merge(streams)

    def chunk(index: int, text: str, logprobs: Any, finish: str | None) -> dict:
        choice = CompletionChoice(index=index, text=text, logprobs=logprobs, finish_reason=finish)
        return CompletionResponse(id=request_id, model=state.current_name, choices=[choice]).model_dump()

    try:
        async for index, output in merged:
            prompt, budget = slots[index]
            choices[index].add(output)
            if body.echo and not echoed[index]:
                echoed[index] = True
                logprobs = (
                    _echo_logprobs(prompt, output.prompt_logprobs, tokenizer) if body.logprobs is not None else None
                )
                yield chunk(index, prompt.text, logprobs, None)
            if budget == 0:
                if output.finished:
                    yield chunk(index, "", None, "length")
                continue
            logprobs = adapter.completion_logprobs(output.logprobs or []) if body.logprobs is not None else None
            if output.text or output.finished or (logprobs is not None and logprobs.tokens):
                yield chunk(index, output.text, logprobs, output.finish_reason if output.finished else None)
    finally:
        await merged.aclose()  # type: ignore[attr-defined]
    if body.stream_options is not None and body.stream_options.include_usage:
        n = body.n
        prompt_tokens = sum(choices[i].prompt_tokens for i in range(0, len(choices), n))
        completion_tokens = sum(c.output_tokens if budget else 0 for c, (_, budget) in zip(choices, slots, strict=True))
        final = CompletionResponse(
            id=request_id, model=state.current_name, choices=[], usage=_usage(prompt_tokens, completion_tokens)
        )
        yield final.model_dump()


# ---------------------------------------------------------------------------------------------- chat


def _content_chars(message: RequestMessage) -> int:
    if isinstance(message.content, str):
        return len(message.content)
    return sum(len(part.text) for part in message.content or [] if part.type == "text")


def _reject_image_parts(messages: list[RequestMessage]) -> None:
    """400 for image content parts: this server's models have no vision encoder."""
    for index, message in enumerate(messages):
        for number, part in enumerate(message.content if isinstance(message.content, list) else []):
            if part.type == "image_url":
                raise APIError(
                    400,
                    f"messages.{index}.content.{number}: this model has no vision encoder; image_url parts are "
                    "not supported",
                    param=f"messages.{index}.content",
                    code="image_input_not_supported",
                )


def _refuse_control_text(messages: list[dict], added_tokens: dict[str, int]) -> None:
    """400 for control-token text in a message with images (that path tokenizes the rendered prompt whole, so
    such text would become real control tokens)."""
    for index, message in enumerate(messages):
        content = message.get("content")
        parts = (
            [content] if isinstance(content, str) else [p.get("text", "") for p in content or [] if isinstance(p, dict)]
        )
        if any(token in part for part in parts for token in added_tokens):
            raise APIError(
                400,
                f"messages.{index}: control-token text is not accepted in requests with images",
                param=f"messages.{index}.content",
            )


async def _chat_prompt(
    state: ServerState, body: ChatCompletionRequest, llm: Any
) -> tuple[list[int], list[dict] | None, list[Any]]:
    """Prompt ids, tools and image spans; rendering, tokenizing and image decoding run in a worker thread."""
    tools = adapter.chat_tools(body)
    if getattr(llm, "vision", None) is None:
        _reject_image_parts(body.messages)
    state.check_text_length(sum(map(_content_chars, body.messages)), llm.max_model_len, "messages")
    messages = message_dicts(body.messages)
    try:
        if not has_images(messages):
            # Rendering and tokenizing run off the event loop (a long prompt would stall every other client).
            ids = await asyncio.to_thread(
                llm.chat_prompt_ids, messages, tools, trust_control_tokens=state.trust_control_tokens
            )
            return ids, tools, []
        check_image_parts(messages)
        if not state.trust_control_tokens:
            _refuse_control_text(messages, llm.tokenizer.added_tokens)
        ids, images = await asyncio.to_thread(llm.chat_request, messages, tools)
        return ids, tools, images
    except PuyuError as exc:
        raise APIError(400, str(exc), param="messages") from None


def _tool_calls(calls: list[dict]) -> list[ToolCall]:
    return [ToolCall(id=call["id"], function=FunctionCall(**call["function"])) for call in calls]


async def chat_completions(state: ServerState, body: ChatCompletionRequest, request: Request) -> Response:
    state.check_model(body.model)
    engine = state.ready_engine()
    llm = engine.engine
    if (
        body.response_format is not None
        and body.response_format.type == "json_object"
        and body.tools
        and body.tool_choice != "none"
    ):
        raise APIError(400, "response_format json_object cannot be combined with tools", param="response_format")
    prompt_ids, tools, images = await _chat_prompt(state, body, llm)
    runs = []
    for choice in range(body.n):
        params, _ = adapter.chat_params(body, len(prompt_ids), llm, choice)
        runs.append((prompt_ids, params))
    request_id = new_id("chatcmpl")
    template = llm.tool_template if tools else None
    result = await _generate(
        state,
        request,
        request_id,
        runs,
        (lambda streams: _chat_events(state, body, request_id, streams, template)) if body.stream else None,
        images,
    )
    if isinstance(result, Response):
        return result
    choices = result
    out = []
    for index, choice in enumerate(choices):
        text = "".join(choice.text)
        calls: list[dict] = []
        if tools:
            text, calls = llm.tool_template.parse_tool_calls(text)
        finish = "tool_calls" if calls else choice.finish_reason
        message = ChatMessage(content=text if (text or not calls) else None, tool_calls=_tool_calls(calls) or None)
        logprobs = (
            adapter.chat_logprobs(choice.logprobs, body.top_logprobs or 0, llm.token_bytes) if body.logprobs else None
        )
        out.append(
            ChatChoice(
                index=index, message=message, logprobs=logprobs, finish_reason=finish, stop_reason=choice.stop_reason
            )
        )
    completion_tokens = sum(choice.output_tokens for choice in choices)
    usage = _usage(choices[0].prompt_tokens, completion_tokens, choices[0].cached_tokens)
    response = ChatCompletionResponse(id=request_id, model=state.current_name, choices=out, usage=usage)
    return JSONResponse(response.model_dump())


async def _chat_events(
    state: ServerState,
    body: ChatCompletionRequest,
    request_id: str,
    streams: list[AsyncIterator[RequestOutput]],
    tool_template: Any | None,
) -> AsyncIterator[dict]:
    n = len(streams)
    parsers = [ToolCallStream(tool_template) if tool_template is not None else None for _ in range(n)]
    usage = [_Choice() for _ in range(n)]

    def chunk(index: int, delta: DeltaMessage, logprobs: ChatLogprobs | None = None, finish: str | None = None) -> dict:
        choice = ChatChunkChoice(index=index, delta=delta, logprobs=logprobs, finish_reason=finish)
        payload = ChatCompletionChunk(id=request_id, model=state.current_name, choices=[choice]).model_dump()
        payload["choices"][0]["delta"] = delta.model_dump(exclude_none=True)
        return payload

    for index in range(n):
        yield chunk(index, DeltaMessage(role="assistant", content=""))
    merged = _merge(streams)
    try:
        async for index, output in merged:
            usage[index].add(output)
            parser = parsers[index]
            text = parser.feed(output.text) if parser is not None else output.text
            logprobs = (
                adapter.chat_logprobs(output.logprobs, body.top_logprobs or 0, state.ready_engine().engine.token_bytes)
                if body.logprobs and output.logprobs
                else None
            )
            if text or logprobs is not None:
                yield chunk(index, DeltaMessage(content=text), logprobs)
            if not output.finished:
                continue
            finish = output.finish_reason
            if parser is not None:
                rest, calls = parser.finish()
                if rest:
                    yield chunk(index, DeltaMessage(content=rest))
                if calls:
                    deltas = [
                        DeltaToolCall(
                            index=number, id=call["id"], type="function", function=DeltaFunctionCall(**call["function"])
                        )
                        for number, call in enumerate(calls)
                    ]
                    yield chunk(index, DeltaMessage(tool_calls=deltas))
                    finish = "tool_calls"
            yield chunk(index, DeltaMessage(), finish=finish)
    finally:
        await merged.aclose()  # type: ignore[attr-defined]
    if body.stream_options is not None and body.stream_options.include_usage:
        final = ChatCompletionChunk(
            id=request_id,
            model=state.current_name,
            choices=[],
            usage=_usage(usage[0].prompt_tokens, sum(c.output_tokens for c in usage)),
        )
        yield final.model_dump()


# ---------------------------------------------------------------------------------------------- app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The schema FastAPI generates, less its 422 responses: validation errors answer 400 here."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        components = schema.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema


_SSE_RESPONSE = {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "with stream=true"}


def create_app(
    engine: AsyncLLMEngine | EngineLoader,
    *,
    model_name: str,
    api_key: str | None = None,
    max_concurrency: int | None = None,
    max_queue: int | None = None,
    on_load_error: Callable[[BaseException], None] | None = None,
    agent_tools: list[str] | None = None,
    agent_workspace: str | None = None,
    max_request_bytes: int | None = DEFAULT_MAX_REQUEST_BYTES,
    trust_control_tokens: bool = False,
    adapters: tuple[str, ...] = (),
    kb: Any | None = None,
) -> FastAPI:
    """The OpenAI-compatible app.

    Args:
        engine: a ready `AsyncLLMEngine`, or a function that builds one (run in a thread after the
            server starts; requests get 503 meanwhile).
        model_name: the name clients put in `model`; other names get 404.
        api_key: if set, /v1 routes and the API docs (/docs, /redoc, /openapi.json) need
            `Authorization: Bearer <api_key>`.
        max_concurrency: most requests handled at once; others wait for a slot.
        max_queue: with `max_concurrency`, most requests waiting for a slot before 429.
        on_load_error: called if the loader fails (the CLI stops the server).
        agent_tools: built-in tools offered at /v1/agent (None: no agent endpoint).
        agent_workspace: folder for the agent's session workspaces (default: a temporary one).
        max_request_bytes: most bytes of a request body (413 beyond); None for no limit.
        trust_control_tokens: tokenize chat messages with the template, so that control-token text in
            them becomes control tokens (only for clients trusted to write raw turns); by default
            message content is plain text.
        adapters: names of the LoRA adapters the engine serves beside the base, each a `model` of its own.
        kb: a `puyu.serve.kb_routes.KbService`: knowledge bases as `kb:NAME` models, and /v1/embeddings.
    """
    state = ServerState(
        model_name=model_name,
        api_key=api_key,
        max_concurrency=max_concurrency,
        max_queue=max_queue,
        max_request_bytes=max_request_bytes,
        trust_control_tokens=trust_control_tokens,
        adapters=adapters,
    )

    async def use(built: AsyncLLMEngine) -> None:
        await built.start()
        tokenizer = built.engine.tokenizer
        state.max_token_chars = await asyncio.to_thread(max_token_chars, tokenizer)
        state.engine = built

    async def load(loader: EngineLoader) -> None:
        try:
            await use(await asyncio.to_thread(loader))
        except Exception as exc:
            state.load_error = one_line(exc)
            logger.error("the model failed to load: %s", state.load_error)
            if on_load_error is not None:
                on_load_error(exc)
            return
        logger.info("model %s loaded", model_name)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loading: asyncio.Task | None = None
        state.closing = asyncio.Event()  # bound to the loop the server runs on
        state.loop = asyncio.get_running_loop()
        if isinstance(engine, AsyncLLMEngine):
            await use(engine)
        else:
            loading = asyncio.create_task(load(engine))
        yield
        state.end_streams()
        if loading is not None and not loading.done():
            loading.cancel()
        if state.engine is not None:
            await state.engine.shutdown(drain=True)

    app = FastAPI(title="puyu", lifespan=lifespan)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.state.puyu = state
    install_error_handlers(app)
    app.add_middleware(GuardMiddleware, api_key=api_key, max_request_bytes=max_request_bytes, metrics=state.metrics)
    if kb is not None:
        kb.mount(app)
    app.include_router(search_api.search_router())

    @app.get("/health", responses={503: ERROR_RESPONSES[503]})
    async def health() -> Response:
        state.ready_engine()
        return JSONResponse({"status": "ok"})

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus"}},
    )
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    api_errors = {status: ERROR_RESPONSES[status] for status in (401, 500, 503)}

    @app.get("/v1/models", response_model=ModelList, responses=api_errors)
    async def models() -> Response:
        llm = state.ready_engine().engine
        cards = [ModelCard(id=model_name, root=model_name, max_model_len=llm.max_model_len)]
        cards += [
            ModelCard(id=name, root=model_name, parent=model_name, max_model_len=llm.max_model_len) for name in adapters
        ]
        cards += [ModelCard(id=name, root=name) for name in (kb.model_ids() if kb is not None else [])]
        return JSONResponse(ModelList(data=cards).model_dump())

    @app.post(
        "/v1/completions",
        response_model=CompletionResponse,
        responses={**ERROR_RESPONSES, 200: _SSE_RESPONSE},
    )
    async def create_completion(body: CompletionRequest, request: Request) -> Response:
        return await completions(state, body, request)

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletionResponse,
        responses={**ERROR_RESPONSES, 200: _SSE_RESPONSE},
    )
    async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
        if kb is not None and kb.serves(body.model):
            return await kb.chat(body)
        if body.model == search_api.SEARCH_MODEL:
            return await search_api.search_chat_completion(body, request)
        return await chat_completions(state, body, request)

    # Further routers (their own modules) are included here.
    if agent_tools is not None:
        from puyu.serve.agent_routes import mount_agent

        mount_agent(app, agent_tools, agent_workspace, api_key)
    mount_web(app)  # the web app at /, its files under /web/
    return app


def max_token_chars(tokenizer: Any) -> int:
    """The most characters any one token spells (raw pieces and added tokens): text longer than
    `tokens × this` cannot be that few tokens, which bounds a prompt's length before tokenizing it."""
    pieces = (tokenizer.id_to_token(i) or "" for i in range(tokenizer.vocab_size))
    return max([1, *map(len, pieces), *map(len, tokenizer.added_tokens)])
