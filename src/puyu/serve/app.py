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
from fastapi.responses import JSONResponse, Response, StreamingResponse

from puyu.engine.async_engine import AsyncLLMEngine, QueueFullError
from puyu.engine.outputs import RequestOutput
from puyu.errors import PuyuError, one_line
from puyu.generation.sampling import SamplingParams
from puyu.serve import openai_adapter as adapter
from puyu.serve.errors import APIError, error_body, error_response, install_error_handlers
from puyu.serve.image_parts import check_image_parts, has_images
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
    ToolCall,
    Usage,
    new_id,
)
from puyu.serve.tool_stream import ToolCallStream

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
    engine: AsyncLLMEngine | None = None
    load_error: str | None = None
    waiting: int = 0
    slots: asyncio.Semaphore | None = None
    metrics: ServerMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = ServerMetrics(lambda: self.engine.stats() if self.engine is not None else None)

    def ready_engine(self) -> AsyncLLMEngine:
        if self.engine is not None:
            return self.engine
        if self.load_error is not None:
            raise APIError(500, f"the model failed to load: {self.load_error}", code="model_load_failed")
        raise APIError(503, "the model is still loading; retry shortly", code="model_loading")

    def check_model(self, name: str) -> None:
        if name != self.model_name:
            raise APIError(
                404,
                f"the model {name!r} does not exist (this server serves {self.model_name!r})",
                param="model",
                code="model_not_found",
            )

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
    images: list[Any] | None = None,
) -> AsyncIterator[RequestOutput]:
    """Add a request and wait for its first output, so that a full queue or a bad prompt becomes an
    HTTP error before any response is sent; the returned iterator yields every output, the first included."""
    stream = engine.generate(request_id, prompt_ids, params, images)
    try:
        first = await stream.__anext__()
    except QueueFullError as exc:
        await stream.aclose()
        raise APIError(429, f"the server is busy: {exc}; retry shortly", code="queue_full") from None
    except PuyuError as exc:
        await stream.aclose()
        raise APIError(400, str(exc)) from None
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
    starts = [
        _start(engine, f"{base_id}-{index}", prompt_ids, params, RequestTimer(state.metrics), images)
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


async def _sse_stream(events: AsyncIterator[Any]) -> AsyncIterator[str]:
    """SSE framing, `data: [DONE]` at the end, and an error event if the engine fails mid-stream."""
    try:
        async for event in events:
            yield _sse(event)
    except (asyncio.CancelledError, GeneratorExit):
        raise
    except Exception as exc:
        logger.exception("stream failed")
        yield _sse(error_body(500, f"generation failed: {one_line(exc)}"))
    finally:
        await events.aclose()  # type: ignore[attr-defined]
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
    prompts = adapter.completion_prompts(body, llm.tokenizer)
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
        id=request_id, model=state.model_name, choices=out, usage=_usage(prompt_tokens, completion_tokens, cached)
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
        body = _sse_stream(_releasing(state, events(streams)))
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
        return CompletionResponse(id=request_id, model=state.model_name, choices=[choice]).model_dump()

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
            id=request_id, model=state.model_name, choices=[], usage=_usage(prompt_tokens, completion_tokens)
        )
        yield final.model_dump()


# ---------------------------------------------------------------------------------------------- chat


async def _chat_prompt(body: ChatCompletionRequest, llm: Any) -> tuple[list[int], list[dict] | None, list[Any]]:
    """Prompt ids, tools and image spans; images are decoded and tiled in a worker thread."""
    tools = adapter.chat_tools(body)
    messages = [{key: value for key, value in message.items() if value is not None} for message in body.messages]
    try:
        if not has_images(messages):
            return llm.chat_prompt_ids(messages, tools), tools, []
        check_image_parts(messages)
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
    prompt_ids, tools, images = await _chat_prompt(body, llm)
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
        logprobs = adapter.chat_logprobs(choice.logprobs, body.top_logprobs or 0) if body.logprobs else None
        out.append(
            ChatChoice(
                index=index, message=message, logprobs=logprobs, finish_reason=finish, stop_reason=choice.stop_reason
            )
        )
    completion_tokens = sum(choice.output_tokens for choice in choices)
    usage = _usage(choices[0].prompt_tokens, completion_tokens, choices[0].cached_tokens)
    response = ChatCompletionResponse(id=request_id, model=state.model_name, choices=out, usage=usage)
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
        payload = ChatCompletionChunk(id=request_id, model=state.model_name, choices=[choice]).model_dump()
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
                adapter.chat_logprobs(output.logprobs, body.top_logprobs or 0)
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
            model=state.model_name,
            choices=[],
            usage=_usage(usage[0].prompt_tokens, sum(c.output_tokens for c in usage)),
        )
        yield final.model_dump()


# ---------------------------------------------------------------------------------------------- app


_API_ROUTES = ("/v1/models", "/v1/completions", "/v1/chat/completions")


class _GuardMiddleware:
    """Pure ASGI (streaming and disconnects pass through untouched): checks the API key on /v1 routes
    and counts responses by endpoint and status."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if self.state.api_key is not None and path.startswith("/v1"):
            headers = dict(scope.get("headers") or [])
            given = headers.get(b"authorization", b"").decode("latin-1")
            if given != f"Bearer {self.state.api_key}":
                message = "missing API key (send 'Authorization: Bearer KEY')" if not given else "invalid API key"
                self.state.metrics.requests.labels(path if path in _API_ROUTES else "other", "401").inc()
                await error_response(401, message, code="invalid_api_key")(scope, receive, send)
                return
        if not path.startswith("/v1"):
            await self.app(scope, receive, send)
            return

        endpoint = path if path in _API_ROUTES else "other"  # bounded label values

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                self.state.metrics.requests.labels(endpoint, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)


def create_app(
    engine: AsyncLLMEngine | EngineLoader,
    *,
    model_name: str,
    api_key: str | None = None,
    max_concurrency: int | None = None,
    max_queue: int | None = None,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """The OpenAI-compatible app.

    Args:
        engine: a ready `AsyncLLMEngine`, or a function that builds one (run in a thread after the
            server starts; requests get 503 meanwhile).
        model_name: the name clients put in `model`; other names get 404.
        api_key: if set, /v1 routes need `Authorization: Bearer <api_key>`.
        max_concurrency: most requests handled at once; others wait for a slot.
        max_queue: with `max_concurrency`, most requests waiting for a slot before 429.
        on_load_error: called if the loader fails (the CLI stops the server).
    """
    state = ServerState(model_name=model_name, api_key=api_key, max_concurrency=max_concurrency, max_queue=max_queue)

    async def load(loader: EngineLoader) -> None:
        try:
            built = await asyncio.to_thread(loader)
            await built.start()
        except Exception as exc:
            state.load_error = one_line(exc)
            logger.error("the model failed to load: %s", state.load_error)
            if on_load_error is not None:
                on_load_error(exc)
            return
        state.engine = built
        logger.info("model %s loaded", model_name)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loading: asyncio.Task | None = None
        if isinstance(engine, AsyncLLMEngine):
            await engine.start()
            state.engine = engine
        else:
            loading = asyncio.create_task(load(engine))
        yield
        if loading is not None and not loading.done():
            loading.cancel()
        if state.engine is not None:
            await state.engine.shutdown(drain=True)

    app = FastAPI(title="puyu", lifespan=lifespan)
    app.state.puyu = state
    install_error_handlers(app)
    app.add_middleware(_GuardMiddleware, state=state)

    @app.get("/health")
    async def health() -> Response:
        state.ready_engine()
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def models() -> Response:
        llm = state.ready_engine().engine
        card = ModelCard(id=model_name, root=model_name, max_model_len=llm.max_model_len)
        return JSONResponse(ModelList(data=[card]).model_dump())

    @app.post("/v1/completions")
    async def create_completion(body: CompletionRequest, request: Request) -> Response:
        return await completions(state, body, request)

    @app.post("/v1/chat/completions")
    async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
        return await chat_completions(state, body, request)

    return app
