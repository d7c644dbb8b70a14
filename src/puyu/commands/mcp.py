"""`puyu mcp serve`: puyu's tools as an MCP server (stdio, or streamable HTTP on 127.0.0.1)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("mcp", help="serve puyu's tools over the Model Context Protocol")
    actions = parser.add_subparsers(dest="mcp_command", metavar="ACTION", required=True)
    serve = actions.add_parser("serve", help="serve tools over MCP")
    serve.add_argument("--tools", default="calculator", help="comma-separated built-in tools (default calculator)")
    serve.add_argument(
        "--kb", action="append", default=[], metavar="KB", help="a knowledge base (puyu kb build) as the kb_search tool"
    )
    serve.add_argument("--workspace", default="mcp-workspace", help="the tools' workspace folder")
    serve.add_argument("--transport", default="stdio", choices=["stdio", "http"], help="stdio (default) or http")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP host (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765); the endpoint is /mcp")
    serve.add_argument("--tool-timeout", type=float, default=30.0, help="seconds per tool call")
    serve.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from puyu.agent.builtin_tools import builtin
    from puyu.agent.mcp_server import build_server, http_app, serve_stdio
    from puyu.commands.agent import kb_tools

    tools = builtin(args.tools) if args.tools.strip() else []
    server = build_server([*tools, *kb_tools(args.kb)], args.workspace, timeout=args.tool_timeout)
    try:
        if args.transport == "stdio":
            asyncio.run(serve_stdio(server))
        else:
            import uvicorn

            uvicorn.run(http_app(server), host=args.host, port=args.port, log_level="warning")
    finally:
        server.puyu_context.close()
    return 0
