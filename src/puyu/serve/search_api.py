"""Deep search over HTTP: `POST /v1/search` (puyu's events as SSE), `POST /solve` (MindSearch's payload, so its
web app works unchanged) and `model: "search"` on `/v1/chat/completions` (any chat client).

The server's own model answers every model call, through the one model client pointed at this server's /v1
(so concurrency limits, queueing and metrics apply to search as to any request). Backends are chosen by the
operator (`SearchSettings.backends`); a request names one of them, never a URL of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from puyu.client import ModelClient, load_client
from puyu.errors import one_line
from puyu.search import DeepSearch, SearchBackend, SearchConfig
from puyu.search.events import Answer, Error, References, SearchEvent, Token
from puyu.serve.errors import APIError, error_body
from puyu.serve.schemas import message_dicts, new_id
from puyu.serve.search_solve import SolveRenderer, dumps, solve_question

logger = logging.getLogger("puyu.serve.search")

SEARCH_MODEL = "search"
MAX_QUESTION_CHARS = 4000


@dataclass
class SearchSettings:
    """What `puyu serve` searches with; set as `app.state.search`.

    Args:
        backends: name → backend; requests pick one by name, the first is the default.
        config: the budgets of every search.
        client: the model client (None: this server's own model, reached over its own /v1).
    """

    backends: dict[str, SearchBackend] = field(default_factory=dict)
    config: SearchConfig = field(default_factory=SearchConfig)
    client: ModelClient | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)


class SearchRequest(BaseModel):
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    model: str | None = None
    backend: str | None = None


class SolveRequest(BaseModel):
    inputs: str | list[dict[str, Any]]
    session_id: int | None = None
    agent_cfg: dict[str, Any] = Field(default_factory=dict)


def _settings(request: Request) -> SearchSettings:
    settings = getattr(request.app.state, "search", None)
    if not isinstance(settings, SearchSettings) or not settings.backends:
        raise APIError(
            400, "search is not enabled on this server (start it with --search-backend)", code="search_disabled"
        )
    return settings


async def _client(request: Request, settings: SearchSettings) -> ModelClient:
    if settings.client is not None:
        return settings.client
    async with settings._lock:
        if settings.client is None:
            state = request.app.state.puyu
            state.ready_engine()  # 503 while the model loads
            # The socket this request came in on (never the Host header, which the client chooses).
            host, port = request.scope["server"]
            host = f"[{host}]" if ":" in host else host
            settings.client = await asyncio.to_thread(
                load_client, f"http://{host}:{port}/v1", api_key=state.api_key, model=state.model_name
            )
    return settings.client


async def _start(request: Request, question: str, model: str | None, backend: str | None) -> DeepSearch:
    settings = _settings(request)
    if model is not None and model != SEARCH_MODEL:
        request.app.state.puyu.check_model(model)
    name = backend or next(iter(settings.backends))
    if name not in settings.backends:
        raise APIError(
            400, f"unknown backend {name!r}; this server offers {sorted(settings.backends)}", param="backend"
        )
    if not question.strip():
        raise APIError(400, "the question is empty", param="question")
    return DeepSearch(await _client(request, settings), settings.backends[name], settings.config)


async def _events(search: DeepSearch, question: str) -> AsyncIterator[SearchEvent]:
    # aclosing: when the client disconnects, the server cancels this generator, which closes the search
    # (its running nodes and model requests are cancelled).
    async with contextlib.aclosing(search.run(question)) as events:
        async for event in events:
            yield event


async def _until_disconnected(request: Request, stream: AsyncIterator[str]) -> AsyncIterator[str]:
    """`stream`, closed as soon as the client goes away, even while it waits on a slow node (the server only
    notices a gone client when it writes, and a search can be silent for a long time)."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    following: asyncio.Future[str] | None = None
    try:
        while True:
            following = asyncio.ensure_future(stream.__anext__())
            await asyncio.wait({following, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                return  # the client left
            try:
                piece = following.result()
            except StopAsyncIteration:
                return
            yield piece
    finally:
        watcher.cancel()
        if following is not None and not following.done():
            following.cancel()  # the cancellation reaches the search, which closes itself
        else:
            await stream.aclose()  # type: ignore[attr-defined]


def _sse(data: str) -> str:
    return f"data: {data}\n\n"


async def _search_stream(search: DeepSearch, question: str) -> AsyncIterator[str]:
    try:
        async for event in _events(search, question):
            yield _sse(json.dumps(event.to_dict(), ensure_ascii=False))
    except Exception as exc:  # a bug must still end the stream well-formed
        logger.exception("search failed")
        yield _sse(json.dumps(Error(f"search failed: {one_line(exc)}").to_dict()))
    yield _sse("[DONE]")


async def _solve_stream(search: DeepSearch, question: str) -> AsyncIterator[str]:
    renderer = SolveRenderer(question)
    try:
        async for event in _events(search, question):
            payload = renderer.render(event)
            if payload is not None:
                yield _sse(dumps(payload))
    except Exception as exc:
        logger.exception("search failed")
        yield _sse(dumps({"error": {"msg": "An error occurred while generating the response.", "details": str(exc)}}))


def _question_of(messages: list[dict[str, Any]]) -> str:
    for message in reversed(message_dicts(messages)):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _reference_list(references: list[dict[str, Any]]) -> str:
    lines = []
    for ref in references:
        where = ref["url"] or f"{ref['source']} [{ref['start']}-{ref['end']}]"
        lines.append(f"[{ref['n']}] {ref['title']} - {where}")
    return "\n\nReferences:\n" + "\n".join(lines) if lines else ""


async def search_chat_completion(body: Any, request: Request) -> Response:
    """`/v1/chat/completions` with `model: "search"`: the last user message is searched; the answer is the
    message content with a reference list after it, and `references` (the SSE shape's) as an extra field."""
    question = _question_of(body.messages)
    if len(question) > MAX_QUESTION_CHARS:
        raise APIError(400, f"the question is longer than {MAX_QUESTION_CHARS} characters", param="messages")
    search = await _start(request, question, None, None)
    completion_id, created = new_id("chatcmpl"), int(time.time())

    if not body.stream:
        answer, references, failure = "", [], None
        async for event in _events(search, question):
            if isinstance(event, Answer):
                answer = event.content
            elif isinstance(event, References):
                references = event.to_dict()["references"]
            elif isinstance(event, Error):
                failure = event.message
        if failure is not None:
            raise APIError(500, failure, code="search_failed")
        message = {"role": "assistant", "content": answer + _reference_list(references), "references": references}
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": SEARCH_MODEL,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }
        )

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": SEARCH_MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return _sse(json.dumps(payload, ensure_ascii=False))

    async def stream() -> AsyncIterator[str]:
        yield chunk({"role": "assistant", "content": ""})
        references: list[dict[str, Any]] = []
        try:
            async for event in _events(search, question):
                if isinstance(event, Token):
                    yield chunk({"content": event.content})
                elif isinstance(event, References):
                    references = event.to_dict()["references"]
                elif isinstance(event, Error):
                    yield _sse(json.dumps(error_body(500, event.message, code="search_failed")))
                    yield _sse("[DONE]")
                    return
        except Exception as exc:
            yield _sse(json.dumps(error_body(500, f"search failed: {one_line(exc)}", code="search_failed")))
            yield _sse("[DONE]")
            return
        yield chunk({"content": _reference_list(references), "references": references}, "stop")
        yield _sse("[DONE]")

    return StreamingResponse(_until_disconnected(request, stream()), media_type="text/event-stream")


def search_router() -> APIRouter:
    """The routes: POST /v1/search and POST /solve (the chat facade is `search_chat_completion`)."""
    router = APIRouter()

    @router.post("/v1/search")
    async def create_search(body: SearchRequest, request: Request) -> Response:
        search = await _start(request, body.question, body.model, body.backend)
        stream = _until_disconnected(request, _search_stream(search, body.question))
        return StreamingResponse(stream, media_type="text/event-stream")

    @router.post("/solve")
    async def solve(body: SolveRequest, request: Request) -> Response:
        state = request.app.state.puyu
        # /solve sits outside /v1 (where MindSearch's app expects it): it checks the key itself.
        if state.api_key is not None and request.headers.get("authorization") != f"Bearer {state.api_key}":
            raise APIError(401, "missing or invalid API key", code="invalid_api_key")
        question = solve_question(body.inputs)
        if not question.strip() or len(question) > MAX_QUESTION_CHARS:
            raise APIError(400, f"inputs must hold a question of 1-{MAX_QUESTION_CHARS} characters", param="inputs")
        search = await _start(request, question, None, None)
        stream = _until_disconnected(request, _solve_stream(search, question))
        return StreamingResponse(stream, media_type="text/event-stream")

    return router


def enable_search(app: Any, settings: SearchSettings) -> None:
    """Turn search on for `app` (its routes are mounted by `create_app`; without settings they answer 400)."""
    app.state.search = settings
