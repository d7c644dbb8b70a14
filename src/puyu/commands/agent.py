"""`puyu agent`: an agent with tools over any model folder or OpenAI-compatible endpoint, one-shot or interactive."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from puyu.commands.options import add_sampling_arguments, sampling_params

PREVIEW_CHARS = 600


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("agent", help="run an agent with tools (calculator, python sandbox, files, MCP…)")
    parser.add_argument("model", help="HF model folder, or an OpenAI-compatible endpoint URL")
    parser.add_argument("question", nargs="?", default=None, help="ask once and exit (default: interactive)")
    parser.add_argument("--tools", default="calculator", help="comma-separated built-in tools (default calculator)")
    parser.add_argument(
        "--kb", action="append", default=[], metavar="KB", help="a knowledge base (puyu kb build) as the kb_search tool"
    )
    parser.add_argument(
        "--protocol", default="auto", choices=["auto", "openai", "react", "internlm2"], help="tool-call protocol"
    )
    parser.add_argument(
        "--mcp", action="append", default=[], help='MCP server: a URL (streamable HTTP) or "COMMAND ARGS" (stdio)'
    )
    parser.add_argument("--workspace", default="agent-workspace", help="folder for session workspaces")
    parser.add_argument("--json", action="store_true", help="print events as JSON lines")
    parser.add_argument("--max-turns", type=int, default=6, help="model calls per question (default 6)")
    parser.add_argument("--tool-timeout", type=float, default=30.0, help="seconds per tool call (default 30)")
    parser.add_argument("--system", default=None, help="system prompt")
    parser.add_argument("--session", default=None, help="session JSON file: loaded if it exists, saved after each turn")
    parser.add_argument("--trace", default=None, help="folder for JSONL traces of each run")
    parser.add_argument("--api-key", default=None, help="API key for an endpoint (default $OPENAI_API_KEY)")
    parser.add_argument("--model-name", default=None, help="model name at the endpoint (default: its first)")
    add_sampling_arguments(parser, max_tokens=512)
    parser.set_defaults(handler=run, temperature=0.0)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from puyu.agent.builtin_tools import builtin
    from puyu.agent.loop import Agent
    from puyu.agent.mcp_bridge import MCPBridge
    from puyu.agent.session import Session
    from puyu.client import load_client

    tools = builtin(args.tools) if args.tools.strip() else []
    tools += kb_tools(args.kb)
    bridges = [MCPBridge(spec, call_timeout=args.tool_timeout) for spec in args.mcp]
    try:
        for bridge in bridges:
            tools += bridge.tools()
        model = load_client(args.model, api_key=args.api_key, model=args.model_name, chat=True)
        agent = Agent(
            model,
            tools,
            args.protocol,
            max_turns=args.max_turns,
            tool_timeout=args.tool_timeout,
            params=sampling_params(args),
            system=args.system,
            workspace=args.workspace,
            trace_dir=args.trace,
        )
        if any(t.name == "python" for t in tools):
            from puyu.agent.isolation import DESCRIPTIONS, available_isolation

            print(f"sandbox: {DESCRIPTIONS[available_isolation()]}", file=sys.stderr)
        session_file = Path(args.session) if args.session else None
        if session_file is not None and session_file.exists():
            session = Session.load(session_file, args.workspace)
        else:
            session = agent.new_session()
        try:
            return agent_loop(agent, session, args.question, args.json, session_file)
        finally:
            session.close()
    finally:
        for bridge in bridges:
            bridge.close()


def kb_tools(paths: list[str]) -> list:
    """`--kb` knowledge bases as search tools (`kb_search`, then `kb_search_2` …)."""
    from puyu.kb.tool import kb_agent_tool

    return [kb_agent_tool(path, "kb_search" if i == 0 else f"kb_search_{i + 1}") for i, path in enumerate(paths)]


def render(event, stdout: TextIO, as_json: bool) -> None:
    """One event on the terminal: a JSON line, or a short human line."""
    if as_json:
        stdout.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
    elif event.type == "thought":
        stdout.write(f"· {event.content}\n")
    elif event.type == "tool_call":
        arguments = event.arguments if isinstance(event.arguments, str) else json.dumps(event.arguments)
        stdout.write(f"→ {event.name} {arguments}\n")
    elif event.type == "tool_result":
        text = event.content if len(event.content) <= PREVIEW_CHARS else event.content[:PREVIEW_CHARS] + " …"
        marker = "✗" if event.error else "←"
        stdout.write(f"{marker} {text}\n")
        for artifact in event.artifacts:
            stdout.write(f"  file: {artifact['url']}\n")
    elif event.type == "error":
        stdout.write(f"! {event.message}\n")
    elif event.type == "answer":
        stdout.write(f"{event.content}\n")
    stdout.flush()


def agent_loop(agent, session, question: str | None, as_json: bool, session_file, stdin: TextIO | None = None,
               stdout: TextIO | None = None) -> int:  # fmt: skip
    """Answer `question`, or read questions from `stdin` until EOF or /exit."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    questions = [question] if question is not None else None
    interactive = questions is None and stdin.isatty()
    while True:
        if questions is not None:
            if not questions:
                return 0
            text = questions.pop()
        else:
            if interactive:
                stdout.write(">>> ")
                stdout.flush()
            line = stdin.readline()
            if not line:
                return 0
            text = line.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                return 0
        for event in agent.run(text, session):
            render(event, stdout, as_json)
        if session_file is not None:
            session.save(session_file)


def chat_with_tools(args: argparse.Namespace) -> int:
    """`puyu chat MODEL --tools …`: the chat prompt, answered by the agent (steps shown as they happen)."""
    from puyu.agent.builtin_tools import builtin
    from puyu.agent.loop import Agent
    from puyu.client import load_client

    model = load_client(args.model, device=args.device, dtype=None if args.dtype == "auto" else args.dtype)
    agent = Agent(model, builtin(args.tools), "auto", params=sampling_params(args), system=args.system)
    session = agent.new_session()
    try:
        return agent_loop(agent, session, None, False, None)
    finally:
        session.close()
