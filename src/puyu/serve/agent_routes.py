"""`POST /v1/agent` (the agent's step events as server-sent events), `GET /v1/agent/tools` and artifact downloads.

The agent talks to the served model through the same OpenAI-compatible API every other client uses, over the
loopback address the request arrived on (never the client's Host header), with the server's own API key; so
`model` may name anything this server serves. Sessions (workspace + interpreter kernel) are kept by `session_id`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import pydantic
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from puyu.serve.errors import APIError

MAX_SESSIONS = 256
MAX_TURNS_LIMIT = 20
BUSY_LEASE_SECONDS = 900.0


class AgentRequest(pydantic.BaseModel):
    model: str | None = None
    messages: list[dict[str, Any]] = pydantic.Field(min_length=1)
    tools: list[str] | None = None
    protocol: Literal["auto", "openai", "react", "internlm2"] = "auto"
    session_id: str | None = pydantic.Field(default=None, max_length=64)
    max_turns: int = pydantic.Field(default=6, ge=1, le=MAX_TURNS_LIMIT)


class _Sessions:
    """Live sessions by id, least recently used evicted (its kernel stopped, its files kept)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.live: collections.OrderedDict[str, Any] = collections.OrderedDict()
        # session id -> when its request started; a lease older than BUSY_LEASE_SECONDS is stale (a client that
        # went away before its stream started never runs the stream's cleanup).
        self.busy: dict[str, float] = {}

    def is_busy(self, session_id: str) -> bool:
        started = self.busy.get(session_id)
        return started is not None and time.monotonic() - started < BUSY_LEASE_SECONDS

    def get(self, session_id: str | None):
        from puyu.agent.session import Session

        if session_id is not None and session_id in self.live:
            self.live.move_to_end(session_id)
            return self.live[session_id]
        session = Session(self.root, session_id)
        self.live[session.id] = session
        while len(self.live) > MAX_SESSIONS:
            oldest_id, oldest = next(iter(self.live.items()))
            if self.is_busy(oldest_id):
                break
            self.live.popitem(last=False)
            oldest.close()
        return session


def _question_and_history(messages: list[dict[str, Any]]) -> tuple[str, list[dict]]:
    last = messages[-1]
    if last.get("role") != "user" or not isinstance(last.get("content"), str) or not last["content"].strip():
        raise APIError(400, "the last message must be a user message with text content", param="messages")
    history = []
    for message in messages[:-1]:
        if message.get("role") not in ("system", "user", "assistant", "tool"):
            raise APIError(400, f"unsupported message role {message.get('role')!r}", param="messages")
        history.append(message)
    return last["content"], history


def mount_agent(app: FastAPI, tool_names: list[str], workspace: str | Path | None, api_key: str | None) -> None:
    """Add the agent routes to `app`, offering the built-in tools `tool_names`.

    Args:
        app: the OpenAI-compatible app (its API-key guard covers these /v1 routes too).
        tool_names: the tools clients may use (`--agent-tools`).
        workspace: where session workspaces live (default: a new temporary folder).
        api_key: the server's key, sent on the agent's own model calls.
    """
    from puyu.agent.builtin_tools import builtin

    offered = {tool.name: tool for tool in builtin(tool_names)}
    root = Path(workspace) if workspace is not None else Path(tempfile.mkdtemp(prefix="puyu-agent-"))
    sessions = _Sessions(root)
    clients: dict[tuple[str, str], Any] = {}
    app.state.puyu_agent_sessions = sessions
    serve_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(running_app: FastAPI) -> AsyncIterator[Any]:
        async with serve_lifespan(running_app) as state:
            yield state
        for session in list(sessions.live.values()):  # stop the interpreter kernels with the server
            session.close()

    app.router.lifespan_context = lifespan

    @app.get("/v1/agent/tools")
    async def agent_tools() -> Response:
        data = [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in offered.values()]
        return JSONResponse({"data": data})

    @app.post("/v1/agent")
    async def agent(body: AgentRequest, request: Request) -> Response:
        from puyu.agent.loop import Agent
        from puyu.client.openai_http import OpenAIModel
        from puyu.errors import PuyuError

        question, history = _question_and_history(body.messages)
        wanted = list(offered) if body.tools is None else body.tools
        unknown = [name for name in wanted if name not in offered]
        if unknown:
            raise APIError(400, f"tools not offered by this server: {', '.join(unknown)}", param="tools")
        try:
            session = sessions.get(body.session_id)
        except PuyuError as exc:
            raise APIError(400, str(exc), param="session_id") from None
        if sessions.is_busy(session.id):
            raise APIError(409, f"session {session.id} is already running a request", param="session_id")
        host, port = request.scope["server"][:2]
        # The client's constructor asks the endpoint for its models, synchronously: off the event loop that must
        # answer it. Clients are kept per address and model name.
        key = (f"http://{host}:{port}/v1", body.model or app.state.puyu.model_name)
        model = clients.get(key)
        if model is None:
            try:
                model = await asyncio.to_thread(OpenAIModel, key[0], api_key=api_key or "unused", model=key[1])
            except PuyuError as exc:
                raise APIError(503, str(exc)) from None
            clients[key] = model

        def artifact_url(session_, name: str) -> str:
            return f"/v1/agent/artifacts/{session_.id}/{name}"

        runner = Agent(
            model,
            [offered[name] for name in wanted],
            body.protocol,
            max_turns=body.max_turns,
            workspace=root,
            artifact_url=artifact_url,
            stream_tokens=True,
        )
        session.messages = history
        sessions.busy[session.id] = time.monotonic()

        async def events() -> AsyncIterator[str]:
            try:
                async for event in runner.arun(question, session):
                    yield f"data: {json.dumps(event.to_dict(), ensure_ascii=False)}\n\n"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failure mid-stream becomes an error event, never a broken server
                yield f"data: {json.dumps({'type': 'error', 'message': f'{type(exc).__name__}: {exc}'})}\n\n"
            finally:
                sessions.busy.pop(session.id, None)
            yield "data: [DONE]\n\n"

        headers = {"Cache-Control": "no-cache", "X-Session-Id": session.id}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    @app.get("/v1/agent/artifacts/{session_id}/{name:path}")
    async def artifact(session_id: str, name: str) -> Response:
        from puyu.agent.session import check_session_id
        from puyu.errors import PuyuError

        try:
            folder = (root / check_session_id(session_id)).resolve()
        except PuyuError:
            raise APIError(404, "no such artifact") from None
        path = (folder / name).resolve()
        if not path.is_relative_to(folder) or not path.is_file():
            raise APIError(404, "no such artifact")
        return FileResponse(path)
