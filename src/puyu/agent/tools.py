"""Tools: typed Python functions with a JSON Schema in OpenAI function format, toolkits and a registry.

`@tool` reads a function's type hints and its docstring (Google, reST or NumPy style) and builds the schema with
pydantic, so enums, defaults, optionals, lists and nested models come out as JSON Schema and arguments are
validated (and coerced) before the function runs. A parameter annotated `ToolContext` is filled by the runtime
(workspace, per-session state) and never appears in the schema.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import inspect
import json
import mimetypes
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, get_type_hints

import docstring_parser
import pydantic

from puyu.errors import PuyuError


@dataclasses.dataclass
class Artifact:
    """A file a tool produced in the session workspace, returned by path (never inlined)."""

    name: str  # path relative to the workspace
    mime: str
    path: Path

    @classmethod
    def from_workspace(cls, workspace: Path, name: str) -> Artifact:
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return cls(name=name, mime=mime, path=workspace / name)

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "mime": self.mime}


@dataclasses.dataclass
class ToolResult:
    """A tool's output: `content` is what the model reads; `data` keeps a JSON value; `artifacts` are files."""

    content: str
    data: Any = None
    artifacts: list[Artifact] = dataclasses.field(default_factory=list)
    error: bool = False


class ToolContext:
    """What the runtime hands a tool that asks for it: the workspace, per-session state (e.g. a sandbox) and the
    per-call time limit."""

    def __init__(
        self, workspace: str | os.PathLike[str], state: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> None:
        self.workspace = Path(workspace).resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.state: dict[str, Any] = {} if state is None else state
        self.timeout = timeout

    def close(self) -> None:
        """Release live objects tools kept in the state (sandbox kernels); JSON-able state stays."""
        for key, value in list(self.state.items()):
            close = getattr(value, "close", None)
            if callable(close):
                close()
                del self.state[key]


def _strip_titles(schema: Any) -> Any:
    # pydantic adds a "title" to every field; they repeat the names and cost prompt tokens.
    if isinstance(schema, dict):
        return {key: _strip_titles(value) for key, value in schema.items() if key != "title" or "type" not in schema}
    if isinstance(schema, list):
        return [_strip_titles(value) for value in schema]
    return schema


class Tool:
    """One callable tool with its OpenAI function spec.

    Args:
        fn: the function (sync or async); its hints and docstring define the schema.
        name: the tool's name (default: the function's name).
        description: overrides the docstring's description.
        timeout: seconds the runtime waits for this tool (None: the agent's default).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.timeout = timeout
        doc = docstring_parser.parse(inspect.getdoc(fn) or "")
        parts = [doc.short_description or "", doc.long_description or ""]
        self.description = description or "\n\n".join(part for part in parts if part).strip()
        param_docs = {param.arg_name: param.description or "" for param in doc.params}
        hints = get_type_hints(fn, include_extras=True)
        self.context_parameter: str | None = None
        fields: dict[str, Any] = {}
        for param in inspect.signature(fn).parameters.values():
            if param.name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            hint = hints.get(param.name, str)
            if hint is ToolContext:
                self.context_parameter = param.name
                continue
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (hint, pydantic.Field(default, description=param_docs.get(param.name) or None))
        self._arguments_model = pydantic.create_model(f"{self.name}_arguments", **fields)
        schema = _strip_titles(self._arguments_model.model_json_schema())
        schema.setdefault("properties", {})
        schema.setdefault("required", [])
        self.parameters: dict[str, Any] = schema

    def spec(self) -> dict[str, Any]:
        """The OpenAI function-tool spec: `{"type": "function", "function": {name, description, parameters}}`."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Checked and coerced keyword arguments; raises `ValueError` with a readable message."""
        try:
            model = self._arguments_model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"invalid arguments for {self.name}: {problems}") from None
        return {name: getattr(model, name) for name in model.model_fields}

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def _prepare(self, arguments: dict[str, Any], context: ToolContext | None) -> dict[str, Any]:
        kwargs = self.validate(arguments)
        if self.context_parameter is not None:
            if context is None:
                raise ValueError(f"tool {self.name} needs a workspace context")
            kwargs[self.context_parameter] = context
        return kwargs

    def call(self, arguments: dict[str, Any], context: ToolContext | None = None) -> ToolResult:
        """Validate `arguments`, run the function, and convert its return value (errors become error results)."""
        try:
            kwargs = self._prepare(arguments, context)
            if self.is_async:
                import asyncio

                value = asyncio.run(self.fn(**kwargs))
            else:
                value = self.fn(**kwargs)
        except Exception as exc:
            return ToolResult(content=f"{type(exc).__name__}: {exc}", error=True)
        return to_result(value, context)

    async def acall(self, arguments: dict[str, Any], context: ToolContext | None = None) -> ToolResult:
        """The async twin of `call`; a sync function runs in a worker thread."""
        import asyncio

        try:
            kwargs = self._prepare(arguments, context)
            if self.is_async:
                value = await self.fn(**kwargs)
            else:
                call = functools.partial(self.fn, **kwargs)
                value = await asyncio.get_running_loop().run_in_executor(_tool_threads(), call)
        except Exception as exc:
            return ToolResult(content=f"{type(exc).__name__}: {exc}", error=True)
        return to_result(value, context)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calling the tool object calls the plain function (handy in tests and scripts)."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


class SchemaTool(Tool):
    """A tool defined by an explicit JSON Schema and a function of the arguments (e.g. a remote MCP tool).

    Arguments are passed through as given; the other side validates them.
    """

    def __init__(
        self,
        name: str,
        description: str,
        parameters: dict[str, Any],
        fn: Callable[..., Any],
        timeout: float | None = None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.description = description
        self.timeout = timeout
        self.context_parameter = None
        self.parameters = dict(parameters or {"type": "object", "properties": {}})
        self.parameters.setdefault("properties", {})
        self.parameters.setdefault("required", [])

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return dict(arguments)


@functools.cache
def _tool_threads() -> concurrent.futures.ThreadPoolExecutor:
    # One pool for the process: the sync driver makes an event loop per run, and a loop's own default executor
    # would start fresh threads every time.
    return concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="puyu-tool")


def to_result(value: Any, context: ToolContext | None) -> ToolResult:
    """A tool's return value as a `ToolResult`: text as is, JSON-able values as JSON, paths as artifacts."""
    if isinstance(value, ToolResult):
        return value
    if isinstance(value, Path):
        if context is None:
            return ToolResult(content=str(value))
        path = value if value.is_absolute() else context.workspace / value
        try:
            name = str(path.resolve().relative_to(context.workspace))
        except ValueError:
            return ToolResult(content=f"the tool returned a path outside the workspace: {value}", error=True)
        artifact = Artifact.from_workspace(context.workspace, name)
        return ToolResult(content=f"file: {name}", artifacts=[artifact])
    if isinstance(value, str):
        return ToolResult(content=value)
    if isinstance(value, pydantic.BaseModel):
        value = value.model_dump(mode="json")
    try:
        return ToolResult(content=json.dumps(value, ensure_ascii=False), data=value)
    except (TypeError, ValueError):
        return ToolResult(content=str(value))


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
) -> Any:
    """Turn a typed function into a `Tool` (usable bare, `@tool`, or with options, `@tool(name=...)`).

    Args:
        fn: the function.
        name: the tool's name (default: the function's).
        description: overrides the docstring.
        timeout: seconds the runtime waits for it.
    """

    def wrap(function: Callable[..., Any]) -> Tool:
        return Tool(function, name=name, description=description, timeout=timeout)

    return wrap(fn) if fn is not None else wrap


class Toolkit:
    """Several related tools in one object; each method marked `@toolkit_method` becomes `Name.method`.

    Subclass it, set `name` (default: the class name), and mark methods.
    """

    name: str = ""

    def tools(self) -> list[Tool]:
        prefix = self.name or type(self).__name__
        found = []
        for attribute in dir(type(self)):
            member = getattr(type(self), attribute)
            if getattr(member, "_puyu_toolkit_method", False):
                bound = getattr(self, attribute)
                found.append(Tool(bound, name=f"{prefix}.{attribute}", timeout=getattr(member, "_puyu_timeout", None)))
        return found


def toolkit_method(fn: Callable[..., Any] | None = None, *, timeout: float | None = None) -> Any:
    """Mark a `Toolkit` method as one of its tools."""

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        function._puyu_toolkit_method = True  # type: ignore[attr-defined]
        function._puyu_timeout = timeout  # type: ignore[attr-defined]
        return function

    return mark(fn) if fn is not None else mark


ToolLike = Tool | Toolkit | Callable[..., Any]


def as_tools(items: Iterable[ToolLike]) -> list[Tool]:
    """Flatten tools, toolkits and plain functions into a list of `Tool`s with unique names."""
    tools: list[Tool] = []
    for item in items:
        if isinstance(item, Tool):
            tools.append(item)
        elif isinstance(item, Toolkit):
            tools.extend(item.tools())
        elif callable(item):
            tools.append(Tool(item))
        else:
            raise PuyuError(f"not a tool: {item!r}")
    names = [t.name for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PuyuError(f"duplicate tool names: {', '.join(duplicates)}")
    return tools


class ToolRegistry:
    """Named tool factories, so the CLI and the server can build tools from names like `calculator,python`."""

    def __init__(self) -> None:
        self._factories: dict[str, Callable[[], list[Tool]]] = {}

    def register(self, name: str, factory: Callable[[], ToolLike | list[ToolLike]]) -> None:
        def build() -> list[Tool]:
            made = factory()
            return as_tools(made if isinstance(made, list) else [made])

        self._factories[name] = build

    def names(self) -> list[str]:
        return sorted(self._factories)

    def build(self, names: Iterable[str]) -> list[Tool]:
        """The tools for `names` (comma-separated strings are split); unknown names raise `PuyuError`."""
        wanted = [part.strip() for name in names for part in name.split(",") if part.strip()]
        unknown = [name for name in wanted if name not in self._factories]
        if unknown:
            raise PuyuError(f"unknown tool(s): {', '.join(unknown)}; available: {', '.join(self.names())}")
        return as_tools([t for name in dict.fromkeys(wanted) for t in self._factories[name]()])
