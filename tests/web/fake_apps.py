"""Small fakes of the agent (`/v1/agent`), knowledge-base (`/v1/kb`, `kb:NAME` models) and search (`/v1/search`)
endpoints, in the shapes those features serve, mounted on a live `puyu serve` app for the browser tests."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse
from PIL import Image

from puyu.serve.schemas import ChatCompletionRequest, message_dicts

STEP_PAUSE = 0.15  # seconds between events: long enough for the page to show each state

AGENT_EVENTS: list[dict] = [
    {"type": "token", "content": "Let me compute"},
    {"type": "thought", "content": "I should multiply **6** by 7."},
    {"type": "tool_call", "id": "c1", "name": "calculator", "arguments": {"expression": "6*7"}},
    {"type": "tool_result", "id": "c1", "name": "calculator", "content": "42", "error": False, "artifacts": []},
    {"type": "tool_call", "id": "c2", "name": "python", "arguments": {"code": "import plot\nplot.bar([6, 7])"}},
    {
        "type": "tool_result",
        "id": "c2",
        "name": "python",
        "content": "saved plot.png",
        "error": False,
        "artifacts": [{"name": "plot.png", "mime": "image/png", "url": "/v1/agent/artifacts/s1/plot.png"}],
    },
    {"type": "answer", "content": "The answer is **42**."},
]

CHUNK = {
    "chunk_id": "guide.md#2",
    "source": "guide.md",
    "start": 120,
    "end": 171,
    "text": "puyu serve exposes an OpenAI-compatible HTTP API.",
}
CITATIONS = [
    {**CHUNK, "n": 1, "text": "puyu serve exposes an OpenAI-compatible…"},
    {"n": 2, "source": "faq.md", "chunk_id": "faq.md#0", "start": 0, "end": 40, "text": "Use --api-key to protect it."},
]
REFUSAL = "no chunk scored above the refusal threshold (0.42)"

SEARCH_NODES = [
    {"id": "a", "question": "What is the capital of France?", "depends_on": []},
    {"id": "b", "question": "How many people live there?", "depends_on": ["a"]},
]


def _sse(events: list[Any]) -> StreamingResponse:
    async def stream() -> AsyncIterator[str]:
        for event in events:
            await asyncio.sleep(STEP_PAUSE)
            yield f"data: {json.dumps(event)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream")


def _kb_chunks(request: ChatCompletionRequest) -> list[dict]:
    question = str(message_dicts(request.messages)[-1]["content"])
    if "weather" in question:
        final = {"content": "", "citations": [], "rejected": True, "reason": REFUSAL}
        pieces: list[str] = []
    else:
        final = {"citations": CITATIONS, "rejected": False, "reason": None}
        pieces = ["puyu serves models over HTTP [1]", " and a key ", "protects it [2]."]
    chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    chunks += [{"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
    chunks.append({"choices": [{"index": 0, "delta": final, "finish_reason": "stop"}]})
    return [{"id": "kb-1", "object": "chat.completion.chunk", "model": request.model, **c} for c in chunks]


def _search_events() -> list[dict]:
    a, b = SEARCH_NODES
    return [
        {"type": "node", "node": {**a, "state": "pending"}},
        {"type": "node", "node": {**b, "state": "pending"}},
        {"type": "node", "node": {**a, "state": "running"}},
        {"type": "node_token", "id": "a", "content": "Paris"},
        {"type": "node_done", "id": "a", "answer": "Paris [1]"},
        {"type": "node", "node": {**a, "state": "done"}},
        {"type": "node", "node": {**b, "state": "running"}},
        {"type": "node", "node": {**b, "state": "failed"}},
        {"type": "token", "content": "The capital is Paris [1]; "},
        {"type": "token", "content": "see also [2]."},
        {
            "type": "references",
            "references": [
                {
                    "n": 1,
                    "title": "Paris",
                    "url": "https://example.org/paris",
                    "source": None,
                    "start": None,
                    "end": None,
                },
                {"n": 2, "title": "notes", "url": "javascript:alert(1)", "source": "notes.md", "start": 0, "end": 9},
            ],
        },
        {"type": "answer", "content": "The capital is Paris [1]; see also [2]."},
    ]


def mount_fakes(app: FastAPI) -> dict[str, list]:
    """Add the fake endpoints to `app` (ahead of its own `/v1/models` and `/v1/chat/completions`, which they
    extend); returns what they received."""
    seen: dict[str, list] = {"agent": [], "uploads": [], "search": [], "kb_chat": []}
    own = {route.path: route.endpoint for route in app.router.routes if hasattr(route, "endpoint")}
    count = len(app.router.routes)

    async def models(request: Request) -> Response:
        listed = json.loads((await own["/v1/models"]()).body)
        listed["data"].append({"id": "kb:docs", "object": "model", "owned_by": "puyu"})
        return JSONResponse(listed)

    async def chat(body: ChatCompletionRequest, request: Request) -> Response:
        if not body.model.startswith("kb:"):
            return await own["/v1/chat/completions"](body, request)
        seen["kb_chat"].append(body.model)
        return _sse(_kb_chunks(body))

    async def agent(request: Request) -> Response:
        seen["agent"].append(await request.json())
        return _sse(AGENT_EVENTS)

    async def tools() -> Response:
        listed = [{"name": n, "description": f"the {n} tool", "parameters": {}} for n in ("calculator", "python")]
        return JSONResponse({"data": listed})

    async def artifact(session: str, name: str) -> Response:
        image = io.BytesIO()
        Image.new("RGB", (60, 30), (36, 89, 214)).save(image, "PNG")
        return Response(image.getvalue(), media_type="image/png")

    async def kbs() -> Response:
        return JSONResponse(
            {"data": [{"name": "docs", "documents": 2, "chunks": 5, "embedder": "bm25", "calibrated": True}]}
        )

    async def upload(name: str, file: list[UploadFile]) -> Response:
        for item in file:
            seen["uploads"].append((name, item.filename, (await item.read()).decode()))
        return JSONResponse(
            {"added": [f.filename for f in file], "changed": [], "removed": [], "skipped": [], "chunks": 7}
        )

    async def chunk(name: str, chunk_id: str) -> Response:
        return (
            JSONResponse(CHUNK)
            if chunk_id == CHUNK["chunk_id"]
            else JSONResponse({"error": {"message": "no such chunk"}}, 404)
        )

    async def search(request: Request) -> Response:
        seen["search"].append(await request.json())
        return _sse(_search_events())

    app.add_api_route("/v1/models", models, methods=["GET"])
    app.add_api_route("/v1/chat/completions", chat, methods=["POST"])
    app.add_api_route("/v1/agent", agent, methods=["POST"])
    app.add_api_route("/v1/agent/tools", tools, methods=["GET"])
    app.add_api_route("/v1/agent/artifacts/{session}/{name}", artifact, methods=["GET"])
    app.add_api_route("/v1/kb", kbs, methods=["GET"])
    app.add_api_route("/v1/kb/{name}/files", upload, methods=["POST"])
    app.add_api_route("/v1/kb/{name}/chunks/{chunk_id}", chunk, methods=["GET"])
    app.add_api_route("/v1/search", search, methods=["POST"])
    added = app.router.routes[count:]
    del app.router.routes[count:]
    app.router.routes[:0] = added  # ahead of the app's own routes
    return seen
