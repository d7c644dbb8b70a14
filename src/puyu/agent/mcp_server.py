"""puyu's tools served over MCP (stdio or streamable HTTP), with their exact JSON Schemas.

Built on the MCP SDK's low-level server: puyu tools already carry JSON Schemas, so they are listed as they are
rather than re-derived from Python signatures. All calls share one workspace (and one interpreter kernel).
"""

from __future__ import annotations

import os
from typing import Any

from puyu.agent.tools import Tool, ToolContext


def build_server(tools: list[Tool], workspace: str | os.PathLike[str], timeout: float = 30.0):
    """An MCP low-level `Server` exposing `tools`, run against `workspace`."""
    import mcp.types as types
    from mcp.server.lowlevel import Server

    server = Server("puyu")
    context = ToolContext(workspace, timeout=timeout)
    by_name = {tool.name: tool for tool in tools}

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return [types.Tool(name=t.name, description=t.description, inputSchema=t.parameters) for t in tools]

    @server.call_tool(validate_input=False)
    async def call_tool(name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        tool = by_name.get(name)
        if tool is None:
            text = f"unknown tool {name!r}"
            return types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=True)
        result = await tool.acall(arguments or {}, context)
        content = [types.TextContent(type="text", text=result.content)]
        return types.CallToolResult(content=content, isError=result.error)

    server.puyu_context = context  # type: ignore[attr-defined] - closed by the caller
    return server


async def serve_stdio(server) -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def http_app(server, path: str = "/mcp"):
    """A Starlette app serving `server` over streamable HTTP at `path`."""
    import contextlib

    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from starlette.applications import Starlette
    from starlette.routing import Mount

    manager = StreamableHTTPSessionManager(app=server, stateless=True)

    async def handle(scope, receive, send) -> None:
        await manager.handle_request(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with manager.run():
            yield

    return Starlette(routes=[Mount(path, app=handle)], lifespan=lifespan)
