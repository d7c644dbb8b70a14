"""Agents: typed tools, three tool-call protocols (openai, react, internlm2), a sandboxed interpreter, sessions, MCP."""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Sandbox": "puyu.agent.sandbox",
    "SandboxResult": "puyu.agent.sandbox",
    "Limits": "puyu.agent.isolation",
    "Tool": "puyu.agent.tools",
    "Toolkit": "puyu.agent.tools",
    "ToolContext": "puyu.agent.tools",
    "ToolResult": "puyu.agent.tools",
    "ToolRegistry": "puyu.agent.tools",
    "Artifact": "puyu.agent.tools",
    "tool": "puyu.agent.tools",
    "toolkit_method": "puyu.agent.tools",
    "BUILTIN_TOOLS": "puyu.agent.builtin_tools",
    "builtin": "puyu.agent.builtin_tools",
    "Agent": "puyu.agent.loop",
    "Session": "puyu.agent.session",
}


def __getattr__(name: str) -> Any:
    # Lazy, so `import puyu.agent` stays light for the CLI.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'puyu.agent' has no attribute {name!r}")
