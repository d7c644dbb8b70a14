"""MCP servers' tools as puyu tools: `--mcp "COMMAND ARGS"` (stdio) or `--mcp URL` (streamable HTTP).

The MCP client session lives on its own event-loop thread for as long as the bridge is open, so its tools can be
called from any thread or event loop (the agent's sync driver makes a fresh loop per run).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import shlex
import threading
from typing import Any

from puyu.agent.tools import SchemaTool, Tool, ToolResult
from puyu.errors import PuyuError, one_line

CONNECT_TIMEOUT = 60.0


def _content_text(content: list[Any]) -> str:
    parts = []
    for item in content:
        if getattr(item, "type", None) == "text":
            parts.append(item.text)
        else:
            parts.append(f"[{getattr(item, 'type', 'content')} content]")
    return "\n".join(parts)


class MCPBridge:
    """A connection to one MCP server; `tools()` are puyu tools that call it.

    Args:
        spec: an http(s) URL (streamable HTTP, e.g. http://127.0.0.1:8000/mcp) or a command line (stdio).
        call_timeout: seconds one tool call may take.
    """

    def __init__(self, spec: str, call_timeout: float = 60.0) -> None:
        self.spec = spec
        self.call_timeout = call_timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="puyu-mcp", daemon=True)
        self._thread.start()
        self._ready: concurrent.futures.Future = concurrent.futures.Future()
        self._stop: asyncio.Event | None = None
        self._session: Any = None
        self._main = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        try:
            self._listed = self._ready.result(timeout=CONNECT_TIMEOUT)
        except Exception as exc:
            self.close()
            raise PuyuError(f"cannot connect to MCP server {spec!r}: {one_line(exc)}") from None

    def _transport(self):
        if self.spec.startswith(("http://", "https://")):
            from mcp.client.streamable_http import streamablehttp_client

            return streamablehttp_client(self.spec)
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        argv = shlex.split(self.spec)
        if not argv:
            raise PuyuError("empty --mcp command")
        return stdio_client(StdioServerParameters(command=argv[0], args=argv[1:]))

    async def _serve(self) -> None:
        from mcp import ClientSession

        self._stop = asyncio.Event()
        try:
            async with self._transport() as streams, ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                listed = await session.list_tools()
                self._session = session
                self._ready.set_result(listed.tools)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            else:
                raise

    def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        """Call one of the server's tools (blocking)."""
        future = asyncio.run_coroutine_threadsafe(self._session.call_tool(name, arguments), self._loop)
        try:
            result = future.result(timeout=self.call_timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return ToolResult(content=f"MCP tool {name} timed out after {self.call_timeout:g} s", error=True)
        return ToolResult(content=_content_text(result.content), error=bool(result.isError))

    def tools(self) -> list[Tool]:
        made = []
        for listed in self._listed:
            name = listed.name

            def call(_name: str = name, **arguments: Any) -> ToolResult:
                return self.call(_name, arguments)

            made.append(SchemaTool(name, listed.description or "", dict(listed.inputSchema or {}), call))
        return made

    def close(self) -> None:
        if self._stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
            with contextlib.suppress(Exception):
                self._main.result(timeout=10)
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> MCPBridge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
