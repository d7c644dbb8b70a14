"""MCP both ways: the SDK's client lists and calls `puyu mcp serve`; a puyu agent calls a FastMCP server's tools."""

from __future__ import annotations

import asyncio
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("mcp")

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from puyu.agent.events import ToolResultEvent
from puyu.agent.loop import Agent
from puyu.agent.mcp_bridge import MCPBridge
from puyu.agent.scripted import ScriptedModel
from puyu.client import ChatResult, ToolCall
from puyu.errors import PuyuError

FASTMCP_SERVER = Path(__file__).parent / "assets" / "fastmcp_server.py"


def test_sdk_client_lists_and_calls_puyu_mcp_serve(tmp_path):
    async def session_run():
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "puyu", "mcp", "serve", "--tools", "calculator,write_file", "--workspace", str(tmp_path)],
        )
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            listed = await session.list_tools()
            good = await session.call_tool("calculator", {"expression": "6 * 7"})
            bad = await session.call_tool("calculator", {"expression": "__import__('os')"})
            wrote = await session.call_tool("write_file", {"path": "a.txt", "content": "hi"})
            return listed, good, bad, wrote

    listed, good, bad, wrote = asyncio.run(session_run())
    by_name = {t.name: t for t in listed.tools}
    assert sorted(by_name) == ["calculator", "write_file"]
    assert by_name["calculator"].inputSchema["required"] == ["expression"]
    assert (good.isError, good.content[0].text) == (False, "42")
    assert bad.isError and "not allowed" in bad.content[0].text
    assert not wrote.isError and (tmp_path / "a.txt").read_text() == "hi"


def test_agent_calls_a_fastmcp_server_over_stdio(tmp_path):
    with MCPBridge(f"{shlex.quote(sys.executable)} {shlex.quote(str(FASTMCP_SERVER))}") as bridge:
        tools = bridge.tools()
        assert sorted(t.name for t in tools) == ["fail", "forecast"]
        forecast = next(t for t in tools if t.name == "forecast")
        assert forecast.parameters["required"] == ["city"]
        calls = [
            ToolCall(name="forecast", arguments={"city": "Paris", "days": 2}, id="a"),
            ToolCall(name="fail", arguments={"reason": "nope"}, id="b"),
        ]
        model = ScriptedModel([ChatResult("", calls), ChatResult("Sunny.")])
        events = list(Agent(model, tools, protocol="openai", workspace=tmp_path).run("weather?"))
    results = [e for e in events if isinstance(e, ToolResultEvent)]
    assert (results[0].content, results[0].error) == ("Paris: sunny for 2 day(s)", False)
    assert results[1].error and "nope" in results[1].content
    assert events[-1].content == "Sunny."


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_bridge_over_streamable_http_to_puyu_mcp_serve(tmp_path):
    port = _free_port()
    argv = [sys.executable, "-m", "puyu", "mcp", "serve", "--transport", "http", "--port", str(port)]
    server = subprocess.Popen([*argv, "--workspace", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()
                time.sleep(0.2)
        with MCPBridge(f"http://127.0.0.1:{port}/mcp") as bridge:
            (calculator,) = bridge.tools()
            assert calculator.call({"expression": "2 ** 8"}).content == "256"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_bad_mcp_spec_is_a_user_error():
    with pytest.raises(PuyuError, match="cannot connect"):
        MCPBridge(f"{sys.executable} -c 'import sys; sys.exit(3)'")
