"""The Jinja environment chat templates render in, built to behave like `transformers`.

`transformers.PreTrainedTokenizerBase.apply_chat_template` compiles a template in an
`ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)` with the loop-control
extension, a `{% generation %}` tag, a `tojson` filter that does not HTML-escape, and the globals
`raise_exception`, `strftime_now`, `dict` and `namespace`. The variables it passes are the
conversation, `tools`, `documents`, `add_generation_prompt`, the tokenizer's named special tokens
and any extra keyword arguments, all first copied into plain JSON-like data. Everything here
mirrors that so a model folder's own template renders byte-identical to `transformers`.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.parser
import jinja2.utils
import numpy as np
from jinja2.sandbox import ImmutableSandboxedEnvironment

# The message fields a model's reasoning may be given under; `reasoning_content` is the one
# templates read. transformers copies whichever is set under all of them before rendering.
REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")

# The named special tokens transformers hands a template (its `special_tokens_map`).
SPECIAL_TOKEN_NAMES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


class GenerationTracker(jinja2.ext.Extension):
    """The `{% generation %}...{% endgeneration %}` tag: records where its body lands in the output.

    The position is the length of everything already yielded by `Template.generate`, the same
    bookkeeping transformers does, so spans agree with its `return_assistant_tokens_mask` even
    for templates that put the tag somewhere buffered (inside a macro, say).
    """

    tags = frozenset({"generation"})

    def __init__(self, environment: jinja2.Environment) -> None:
        super().__init__(environment)
        # One environment per template, but a template may be rendered from several threads.
        self._state = threading.local()

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        call = self.call_method("_generation_block")
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _generation_block(self, caller: jinja2.runtime.Macro) -> str:
        text = caller()
        state = getattr(self._state, "active", None)
        if state is not None:
            start = state["emitted"]
            state["spans"].append((start, start + len(text)))
        return text

    def render(self, template: jinja2.Template, variables: dict[str, Any]) -> tuple[str, list[tuple[int, int]]]:
        """Render `template` and return its text and the spans of its generation blocks."""
        state: dict[str, Any] = {"emitted": 0, "spans": []}
        self._state.active = state
        pieces: list[str] = []
        try:
            for piece in template.generate(**variables):
                pieces.append(piece)
                state["emitted"] += len(piece)
        finally:
            self._state.active = None
        return "".join(pieces), state["spans"]


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own filter HTML-escapes and sorts keys; chat templates expect plain json.dumps.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _TemplateDict:
    """`dict(...)` inside a template, without exposing the `dict` type itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    """`namespace(...)` that refuses underscore-prefixed attributes, as transformers' does."""

    def __init__(*args: Any, **kwargs: Any) -> None:
        self, rest = args[0], args[1:]
        attrs = dict(*rest, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _TemplateNamespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"chat templates cannot store underscore-prefixed attributes on a namespace (got {name!r})"
            )


def compile_template(source: str) -> tuple[jinja2.Template, GenerationTracker]:
    """Compile a chat template in its own transformers-compatible sandbox.

    Args:
        source: the Jinja source.

    Returns:
        The compiled template and the generation-tag extension bound to its environment.

    Raises:
        jinja2.TemplateSyntaxError: the source does not parse.
    """
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[GenerationTracker, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _TemplateNamespace
    template = env.from_string(source)
    tracker = env.extensions[GenerationTracker.identifier]
    assert isinstance(tracker, GenerationTracker)
    return template, tracker


def plain_data(value: Any) -> Any:
    """A fresh copy of `value` made only of JSON-like types, which is all a template may see.

    Anything else becomes an inert placeholder naming its type (e.g. "<ndarray>"), as in
    transformers, so objects with dangerous methods never reach the sandbox.
    """
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {plain_data(key): plain_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_data(item) for item in value]
    if isinstance(value, tuple):
        return tuple(plain_data(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: plain_data(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, np.generic):
        # numpy scalars: np.bool_(False) must not turn into a truthy placeholder.
        return plain_data(value.item())
    if callable(getattr(value, "model_dump", None)):
        return plain_data(value.model_dump())
    return f"<{type(value).__name__}>"


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as transformers hands it to a template.

    Keys whose value is None are dropped (many templates test `'content' in message` or render a
    literal "None"), everything is copied into plain data, and a reasoning field given under any
    of its names is copied under all of them.
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        plain = plain_data({key: value for key, value in message.items() if value is not None})
        reasoning = next((plain[key] for key in REASONING_FIELDS if plain.get(key) is not None), None)
        if reasoning is not None:
            plain = {"thinking": reasoning, **plain, "reasoning_content": reasoning}
        out.append(plain)
    return out
