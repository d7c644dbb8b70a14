"""puyu's built-in tools: calculator, python (the sandbox), workspace files, web search and (off by default) fetch_url.

Each is a plain `@tool` function; `BUILTIN_TOOLS` maps the names the CLI and the server accept to them.
"""

from __future__ import annotations

import re
from pathlib import Path

from puyu.agent.calculator import calculate
from puyu.agent.tools import Artifact, Tool, ToolContext, ToolRegistry, ToolResult, tool
from puyu.agent.web import fetch_readable, web_search_backend

MAX_READ_CHARS = 20_000
MAX_LISTED = 500


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly and return the number.

    Args:
        expression: arithmetic with + - * / // % ** and parentheses, e.g. "(3 + 4) * 12 / 7"; sqrt, log, sin and
            the constants pi and e are allowed.
    """
    return calculate(expression)


_FENCE = re.compile(r"^\s*```[\w+-]*\n(.*?)\n?```\s*$", re.DOTALL)


def strip_fence(code: str) -> str:
    """Code without a surrounding Markdown fence (InternLM2 writes ```python … ``` inside interpreter calls)."""
    match = _FENCE.match(code)
    return match.group(1) if match else code


def _sandbox(context: ToolContext):
    from puyu.agent.sandbox import Sandbox

    sandbox = context.state.get("sandbox")
    if sandbox is None:
        sandbox = context.state["sandbox"] = Sandbox(context.workspace, timeout=context.timeout)
        # A session loaded from disk gets its variables back by replaying the cells that ran before.
        for cell in context.state.get("python_cells", []):
            sandbox.run(cell)
    return sandbox


@tool
def python(code: str, context: ToolContext) -> ToolResult:
    """Run Python code in a stateful sandboxed interpreter (variables persist between calls; no network).

    Args:
        code: Python source. The value of the last expression is returned; print() output too. matplotlib
            figures are saved as PNG files.
    """
    code = strip_fence(code)
    result = _sandbox(context).run(code)
    if result.restarted:
        context.state["python_cells"] = []
    if result.ok:
        context.state.setdefault("python_cells", []).append(code)
    artifacts = [Artifact.from_workspace(context.workspace, name) for name in result.artifacts]
    return ToolResult(content=result.as_text(), artifacts=artifacts, error=not result.ok)


def _inside(context: ToolContext, path: str) -> Path:
    """`path` resolved inside the workspace; anything that escapes it (.., absolute paths, symlinks) is refused."""
    target = (context.workspace / path).resolve()
    if not target.is_relative_to(context.workspace):
        raise PermissionError(f"{path!r} is outside the workspace")
    return target


@tool
def read_file(path: str, context: ToolContext) -> str:
    """Read a text file from the workspace.

    Args:
        path: the file's path relative to the workspace.
    """
    text = _inside(context, path).read_text(encoding="utf-8", errors="replace")
    if len(text) > MAX_READ_CHARS:
        return text[:MAX_READ_CHARS] + f"\n… [truncated: {len(text) - MAX_READ_CHARS} more characters]"
    return text


@tool
def write_file(path: str, content: str, context: ToolContext) -> Path:
    """Write a text file in the workspace (folders are created; an existing file is replaced).

    Args:
        path: the file's path relative to the workspace.
        content: the text to write.
    """
    from puyu.io import atomic_write_text

    target = _inside(context, path)
    atomic_write_text(target, content)
    return target


@tool
def list_files(context: ToolContext, path: str = ".") -> list[str]:
    """List the files in a workspace folder, recursively, as paths relative to the workspace.

    Args:
        path: the folder, relative to the workspace.
    """
    folder = _inside(context, path)
    found = []
    for entry in sorted(folder.rglob("*")):
        if entry.is_file():
            found.append(str(entry.relative_to(context.workspace)))
            if len(found) >= MAX_LISTED:
                break
    return found


@tool
def web_search(query: str, max_results: int = 5) -> list[dict]:
    """Search the web and return results as title, url and snippet.

    Args:
        query: what to search for.
        max_results: how many results to return (1-20).
    """
    return web_search_backend().search(query, max(1, min(max_results, 20)))


@tool
def fetch_url(url: str) -> str:
    """Fetch a web page and return its readable text.

    Args:
        url: an http(s) address.
    """
    return fetch_readable(url)


BUILTIN_TOOLS = ToolRegistry()
for _tool in (calculator, python, read_file, write_file, list_files, web_search, fetch_url):
    BUILTIN_TOOLS.register(_tool.name, lambda made=_tool: made)
DEFAULT_TOOLS = ("calculator",)


def builtin(names: str | list[str]) -> list[Tool]:
    """Built-in tools by name, e.g. `builtin("calculator,python")`."""
    return BUILTIN_TOOLS.build([names] if isinstance(names, str) else names)
