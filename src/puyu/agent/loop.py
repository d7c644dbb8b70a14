"""The agent loop: ask the model, run the tools it calls, feed the results back, until it answers.

One implementation (async); `run` drives it from synchronous code. Each run yields typed events
(`puyu.agent.events`) and, when a trace folder is set, writes them with model token counts and latencies as JSONL.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from puyu.agent.events import (
    AnswerEvent,
    ErrorEvent,
    Event,
    ThoughtEvent,
    TokenEvent,
    ToolCallEvent,
    ToolResultEvent,
)
from puyu.agent.protocols import AgentProtocol, make_protocol
from puyu.agent.protocols.base import INTERPRETER_NAMES, REPAIR_PROMPT, Turn
from puyu.agent.protocols.openai import OpenAIProtocol, turn_from_result
from puyu.agent.session import Session
from puyu.agent.tools import Tool, ToolLike, ToolResult, as_tools
from puyu.client import ChatResult, ModelClient, ToolCall
from puyu.generation.sampling import SamplingParams

INTERPRETER_GRACE = 5.0
FALLBACK_ANSWER = "Sorry, I could not reach an answer within the allowed turns."


def _default_artifact_url(session: Session, name: str) -> str:
    return str(session.workspace / name)


class Agent:
    """An agent over any model client, with tools, in one of three tool-call protocols.

    Args:
        model: a `puyu.client` model (in-process folder or OpenAI-compatible endpoint).
        tools: `Tool`s, `Toolkit`s or plain typed functions.
        protocol: "auto" (from the model's chat template), "openai", "react" or "internlm2" (or a protocol object).
        max_turns: model calls per question; the last one is told to answer without tools.
        tool_timeout: seconds one tool call may take before it is reported as timed out.
        params: sampling settings (default: greedy, 512 new tokens).
        system: a system prompt put at the start of new sessions.
        workspace: the folder holding each session's workspace (default: ./agent-workspace).
        trace_dir: when set, each run writes `<trace_dir>/<session>-<run>.jsonl`.
        artifact_url: maps (session, file name) to the URL put in `tool_result` events.
        stream_tokens: also yield `token` events as the model writes (native protocol only).
    """

    def __init__(
        self,
        model: ModelClient,
        tools: Iterable[ToolLike] = (),
        protocol: str | AgentProtocol = "auto",
        *,
        max_turns: int = 6,
        tool_timeout: float = 30.0,
        params: SamplingParams | None = None,
        system: str | None = None,
        workspace: str | os.PathLike[str] = "agent-workspace",
        trace_dir: str | os.PathLike[str] | None = None,
        artifact_url: Callable[[Session, str], str] = _default_artifact_url,
        stream_tokens: bool = False,
    ) -> None:
        self.model = model
        self.tools: list[Tool] = as_tools(tools)
        self.protocol = make_protocol(protocol, model, self.tools)
        self.max_turns = max(1, max_turns)
        self.tool_timeout = tool_timeout
        self.params = params or SamplingParams(max_tokens=512, temperature=0.0)
        self.system = system
        self.workspace = Path(workspace)
        self.trace_dir = Path(trace_dir) if trace_dir is not None else None
        self.artifact_url = artifact_url
        self.stream_tokens = stream_tokens

    def new_session(self, session_id: str | None = None) -> Session:
        session = Session(self.workspace, session_id)
        session.context.timeout = self.tool_timeout
        return session

    # -- public entry points -----------------------------------------------------------------------------------

    def run(self, question: str, session: Session | None = None) -> Iterator[Event]:
        """The run's events, from synchronous code (inside an event loop, use `arun`)."""
        loop = asyncio.new_event_loop()
        events = self.arun(question, session)
        try:
            while True:
                try:
                    yield loop.run_until_complete(events.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            loop.run_until_complete(events.aclose())
            loop.close()

    def ask(self, question: str, session: Session | None = None) -> str:
        """Run to the end and return the final answer's text."""
        answer = ""
        for event in self.run(question, session):
            if isinstance(event, AnswerEvent):
                answer = event.content
        return answer

    async def arun(self, question: str, session: Session | None = None) -> AsyncIterator[Event]:
        """The run's events as an async generator; closing or cancelling it cancels running tool calls.

        Args:
            question: the user's message.
            session: the conversation to continue (default: a new one, closed at the end).
        """
        own_session = session is None
        session = session or self.new_session()
        session.context.timeout = self.tool_timeout
        trace = _Trace(self.trace_dir, session.id) if self.trace_dir is not None else None
        try:
            async for event in self._loop(question, session, trace):
                if trace is not None:
                    trace.write(event.to_dict())
                yield event
        finally:
            if trace is not None:
                trace.close()
            if own_session:
                session.close()

    # -- the loop ----------------------------------------------------------------------------------------------

    async def _loop(self, question: str, session: Session, trace: _Trace | None) -> AsyncIterator[Event]:
        if not session.messages and self.system:
            session.messages.append({"role": "system", "content": self.system})
        session.messages.append({"role": "user", "content": question})
        repaired = False
        for index in range(self.max_turns):
            answer_now = index == self.max_turns - 1
            started = time.monotonic()
            try:
                if self.stream_tokens and isinstance(self.protocol, OpenAIProtocol):
                    deltas = []
                    stream = self.protocol.astream(self.model, session.messages, self.tools, self.params, answer_now)
                    async for delta in stream:
                        deltas.append(delta)
                        if delta.content:
                            yield TokenEvent(delta.content)
                    turn = turn_from_result(ChatResult.from_deltas(deltas))
                else:
                    turn = await self.protocol.astep(self.model, session.messages, self.tools, self.params, answer_now)
            except Exception as exc:  # the model or endpoint failed: report it, never crash the caller
                yield ErrorEvent(f"model call failed: {type(exc).__name__}: {exc}")
                return
            if trace is not None:
                trace.write(
                    {
                        "type": "model",
                        "turn": index,
                        "seconds": round(time.monotonic() - started, 4),
                        "prompt_tokens": turn.prompt_tokens,
                        "completion_tokens": turn.completion_tokens,
                    }
                )
            if turn.error and not answer_now:
                if repaired:
                    # A second unreadable reply: take its text as the answer rather than loop.
                    yield ErrorEvent(f"the reply still did not parse ({turn.error}); using it as the answer")
                    session.messages.append({"role": "assistant", "content": turn.content, "raw": turn.raw})
                    yield AnswerEvent(turn.content)
                    return
                repaired = True
                yield ErrorEvent(f"the reply did not parse ({turn.error}); asking the model once to repair it")
                self._append_repair(session, turn)
                continue
            if not turn.calls or answer_now:
                content = turn.content if not turn.calls else (turn.content or FALLBACK_ANSWER)
                session.messages.append({"role": "assistant", "content": content, "raw": turn.raw})
                yield AnswerEvent(content or (FALLBACK_ANSWER if turn.error else ""))
                return
            if turn.content.strip():
                yield ThoughtEvent(turn.content.strip())
            session.messages.append(turn.message())
            for call in turn.calls:
                yield ToolCallEvent(call.id, call.name, call.arguments)
            results = await self._run_calls(turn.calls, session)
            for call, result in zip(turn.calls, results, strict=True):
                session.messages.append(
                    {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": result.content}
                )
                artifacts = [
                    {"name": a.name, "mime": a.mime, "url": self.artifact_url(session, a.name)}
                    for a in result.artifacts
                ]
                yield ToolResultEvent(call.id, call.name, result.content, result.error, artifacts)
        yield AnswerEvent(FALLBACK_ANSWER)

    def _append_repair(self, session: Session, turn: Turn) -> None:
        session.messages.append(turn.message())
        note = REPAIR_PROMPT.format(error=turn.error)
        if turn.calls:
            # Native calls must each be answered by a tool message; the note goes there.
            for call in turn.calls:
                session.messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": note})
        else:
            session.messages.append({"role": "user", "content": note})

    def _resolve(self, call: ToolCall) -> tuple[Tool | None, dict[str, Any] | str]:
        by_name = {t.name: t for t in self.tools}
        arguments = call.arguments
        if call.name in by_name:
            return by_name[call.name], arguments
        # Interpreter calls under Lagent's name and argument ({"command"}) run puyu's python tool ({"code"}).
        if call.name in INTERPRETER_NAMES:
            interpreter = next((t for t in self.tools if t.name in INTERPRETER_NAMES), None)
            if interpreter is not None and isinstance(arguments, dict) and "command" in arguments:
                arguments = {"code": arguments["command"]}
            return interpreter, arguments
        return None, arguments

    async def _run_calls(self, calls: list[ToolCall], session: Session) -> list[ToolResult]:
        tasks = [asyncio.ensure_future(self._run_one(call, session)) for call in calls]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()

    async def _run_one(self, call: ToolCall, session: Session) -> ToolResult:
        tool, arguments = self._resolve(call)
        if tool is None:
            names = ", ".join(t.name for t in self.tools) or "none"
            return ToolResult(content=f"unknown tool {call.name!r}; available tools: {names}", error=True)
        if not isinstance(arguments, dict):
            return ToolResult(content=f"arguments for {tool.name} must be a JSON object, got: {arguments}", error=True)
        timeout = tool.timeout if tool.timeout is not None else self.tool_timeout
        # The interpreter enforces the same limit itself (and restarts its kernel): give it slack to report that.
        grace = INTERPRETER_GRACE if tool.name in INTERPRETER_NAMES else 0.0
        try:
            return await asyncio.wait_for(tool.acall(arguments, session.context), timeout + grace)
        except TimeoutError:
            return ToolResult(content=f"{tool.name} timed out after {timeout:g} s", error=True)


class _Trace:
    """JSONL trace of one run: events and model steps with timestamps."""

    def __init__(self, folder: Path, session_id: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.run_id = uuid.uuid4().hex[:12]
        self.path = folder / f"{session_id}-{self.run_id}.jsonl"
        self.started = time.monotonic()
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        line = {"run": self.run_id, "t": round(time.monotonic() - self.started, 4), **record}
        self._file.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
