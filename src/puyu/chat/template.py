"""`ChatTemplate`: render OpenAI-style conversations the way `transformers` does, and find the
parts of the text a model is trained to produce.
"""

from __future__ import annotations

import bisect
import functools
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import jinja2

from puyu.chat import jinja_env
from puyu.chat.builtin import BUILTINS, FAMILY_DEFAULTS
from puyu.chat.messages import validate_messages, validate_tools
from puyu.chat.tool_calls import PARSERS, guess_tool_format, strip_stop_string
from puyu.errors import PuyuError, one_line

# Same test transformers uses to decide whether a template marks assistant text itself.
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")

# End-of-turn markers looked for in a custom template's source to guess its stop strings.
_KNOWN_END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")


class OffsetTokenizer(Protocol):
    """What `ChatTemplate.encode` needs from a tokenizer."""

    def encode_with_offsets(
        self, text: str, add_special_tokens: bool = ...
    ) -> tuple[list[int], list[tuple[int, int]]]: ...


@dataclass
class RenderedChat:
    """A rendered conversation.

    Attributes:
        text: the prompt text, special tokens written out as text.
        assistant_spans: sorted, non-overlapping `(start, end)` character spans of `text` that the
            model is trained to produce: each assistant turn's content, tool-call text and end token.
    """

    text: str
    assistant_spans: list[tuple[int, int]] = field(default_factory=list)


@functools.lru_cache(maxsize=64)
def _compile(source: str) -> tuple[jinja2.Template, jinja_env.GenerationTracker]:
    try:
        return jinja_env.compile_template(source)
    except jinja2.TemplateSyntaxError as exc:
        message = " ".join(str(exc.message).split())
        raise PuyuError(f"chat template does not parse: line {exc.lineno}: {message}") from None


_TOOLS_VARIABLE = re.compile(r"\btools\b")


class ChatTemplate:
    """A Jinja chat template plus what it takes to render it and read the model's replies.

    Attributes:
        name: "internlm2", "llama3" or "qwen2" for a built-in template, "custom" otherwise.
        source: the Jinja source.
        stop_strings: strings that end an assistant turn, for stopping generation.
        tool_format: which tool-call syntax `parse_tool_calls` reads ("internlm2", "llama3",
            "qwen2"), or None when unknown.
        special_tokens: the token variables handed to the template (bos_token, eos_token, ...).
    """

    def __init__(
        self,
        name: str,
        source: str,
        stop_strings: Sequence[str],
        *,
        special_tokens: Mapping[str, str | None] | None = None,
        tool_format: str | None = None,
    ) -> None:
        if not isinstance(source, str):
            raise PuyuError(f"chat template must be a string, got {type(source).__name__}")
        self.name = name
        self.source = source
        self.stop_strings = list(stop_strings)
        self.tool_format = tool_format
        # transformers passes only the tokens that are set, as plain strings.
        self.special_tokens = {key: str(value) for key, value in (special_tokens or {}).items() if value is not None}
        self._template, self._tracker = _compile(source)
        self._tagged = _GENERATION_TAG.search(source) is not None

    def __repr__(self) -> str:
        return f"ChatTemplate(name={self.name!r}, stop_strings={self.stop_strings!r})"

    @property
    def renders_tools(self) -> bool:
        """Whether the source reads the `tools` variable (InternLM2's shipped template, for one, does not)."""
        return _TOOLS_VARIABLE.search(self.source) is not None

    # ------------------------------------------------------------------ construction

    @classmethod
    def builtin(cls, name: str) -> ChatTemplate:
        """One of the built-in templates.

        Args:
            name: "internlm2", "llama3" or "qwen2".

        Raises:
            PuyuError: unknown name.
        """
        spec = BUILTINS.get(name)
        if spec is None:
            raise PuyuError(f"unknown chat template {name!r} (built-in templates: {', '.join(BUILTINS)})")
        return cls(name, spec.source, spec.stop_strings, special_tokens=spec.special_tokens, tool_format=name)

    @classmethod
    def from_source(
        cls,
        source: str,
        *,
        special_tokens: Mapping[str, str | None] | None = None,
        family_hint: str | None = None,
    ) -> ChatTemplate:
        """A template from Jinja source, e.g. a model folder's `chat_template`.

        Its tool-call syntax and stop strings are guessed from markers in the source, then from
        `family_hint`; the eos token is always a stop string.

        Args:
            source: the Jinja source.
            special_tokens: values for bos_token, eos_token, ... (None entries are left out).
            family_hint: the model family ("internlm2", "llama", "qwen2"), if known.

        Raises:
            PuyuError: the source does not parse.
        """
        tool_format = guess_tool_format(source, family_hint)
        stops: list[str] = []
        if tool_format is not None:
            stops.extend(BUILTINS[tool_format].stop_strings)
        stops.extend(marker for marker in _KNOWN_END_MARKERS if marker in source)
        eos = (special_tokens or {}).get("eos_token")
        if eos:
            stops.append(str(eos))
        return cls(
            "custom",
            source,
            list(dict.fromkeys(stops)),
            special_tokens=special_tokens,
            tool_format=tool_format,
        )

    @classmethod
    def for_model(cls, tokenizer: Any, family: str, name: str | None = None) -> ChatTemplate:
        """The template to use for a model.

        Args:
            tokenizer: the model's tokenizer; its `chat_template` (str or None) and its
                bos/eos/pad/unk token attributes are read.
            family: the model family: "internlm2", "llama" or "qwen2".
            name: a built-in template to use instead of the tokenizer's own.

        Returns:
            `builtin(name)` when `name` is given, else the tokenizer's own template, else the
            family's built-in template. Special tokens come from the tokenizer where it sets them.

        Raises:
            PuyuError: unknown template name or family, or a template that does not parse.
        """
        tokens = {key: getattr(tokenizer, key, None) for key in jinja_env.SPECIAL_TOKEN_NAMES}
        tokens = {key: str(value) for key, value in tokens.items() if value is not None}
        source = getattr(tokenizer, "chat_template", None)
        if name is None and source is not None:
            if not isinstance(source, str):
                raise PuyuError(f"tokenizer chat_template must be a string, got {type(source).__name__}")
            # A folder puyu wrote carries a built-in template verbatim: keep its name and tool format.
            name = next((known for known, spec in BUILTINS.items() if spec.source == source), None)
            if name is None:
                return cls.from_source(source, special_tokens=tokens, family_hint=family)
        if name is None:
            name = FAMILY_DEFAULTS.get(family)
            if name is None:
                raise PuyuError(
                    f"no chat template for model family {family!r} "
                    f"(known families: {', '.join(sorted(FAMILY_DEFAULTS))}); name a built-in template"
                )
        template = cls.builtin(name)
        template.special_tokens.update(tokens)
        return template

    # ------------------------------------------------------------------ rendering

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = False,
        **extra: Any,
    ) -> RenderedChat:
        """Render a conversation, exactly as `transformers`' `apply_chat_template(tokenize=False)`.

        Args:
            messages: OpenAI-style messages (see `puyu.chat.messages.validate_messages`).
            tools: OpenAI-style tool schemas, or None.
            add_generation_prompt: end with the header that opens an assistant turn.
            **extra: further template variables (e.g. `documents`, `date_string`); they override
                the special tokens of the same name.

        Returns:
            The text and its assistant spans: from the template's `{% generation %}` blocks, or,
            for a template without them, by rendering each assistant turn's prefix (see
            `_prefix_spans`).

        Raises:
            PuyuError: invalid messages or tools, or the template failed (e.g. `raise_exception`).
        """
        checked = validate_messages(messages)
        checked_tools = validate_tools(tools)
        text, spans = self._render(checked, checked_tools, add_generation_prompt, extra)
        if not self._tagged:
            spans = self._prefix_spans(checked, checked_tools, extra, text)
        return RenderedChat(text, _normalize_spans(spans))

    def encode(
        self,
        tokenizer: OffsetTokenizer,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = False,
    ) -> tuple[list[int], list[bool]]:
        """Render and tokenize a conversation, marking the tokens the model is trained to produce.

        Args:
            tokenizer: has `encode_with_offsets(text, add_special_tokens=False)` returning token ids
                and `(start, end)` character offsets. The rendered text already holds BOS where the
                template writes it, so no special tokens are added.
            messages: as for `render`.
            tools: as for `render`.
            add_generation_prompt: as for `render`.

        Returns:
            The token ids and a mask, True for each token overlapping an assistant span.
        """
        rendered = self.render(messages, tools=tools, add_generation_prompt=add_generation_prompt)
        ids, offsets = tokenizer.encode_with_offsets(rendered.text, add_special_tokens=False)
        return list(ids), assistant_mask(offsets, rendered.assistant_spans)

    def parse_tool_calls(self, text: str) -> tuple[str, list[dict[str, Any]]]:
        """Split generated assistant text into content and OpenAI-style tool calls.

        A trailing end-of-turn marker (one of `stop_strings`) is dropped first.

        Args:
            text: what the model generated for one assistant turn.

        Returns:
            The content with the call markup removed, and the calls (`id` "call_<hex>", `type`
            "function", `function` with `name` and JSON-string `arguments`). A call whose JSON
            does not parse stays in the content and yields no call.
        """
        text = strip_stop_string(text, self.stop_strings)
        parser = PARSERS.get(self.tool_format or "")
        if parser is None:
            return text, []
        return parser(text)

    # ------------------------------------------------------------------ internals

    def _render(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        add_generation_prompt: bool,
        extra: Mapping[str, Any],
    ) -> tuple[str, list[tuple[int, int]]]:
        extra = dict(extra)
        documents = extra.pop("documents", None)
        variables = jinja_env.plain_data({**self.special_tokens, **extra})
        variables.update(
            messages=jinja_env.template_messages(messages),
            tools=jinja_env.plain_data(tools),
            documents=jinja_env.plain_data(documents),
            add_generation_prompt=add_generation_prompt,
        )
        try:
            return self._tracker.render(self._template, variables)
        except (jinja2.TemplateError, TypeError) as exc:
            message = one_line(exc)
            raise PuyuError(f"chat template {self.name!r} failed: {message}") from None

    def _prefix_spans(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        extra: Mapping[str, Any],
        text: str,
    ) -> list[tuple[int, int]]:
        """Assistant spans for a template without `{% generation %}` tags.

        For assistant message i, render messages[:i] with the generation prompt and messages[:i+1]
        without it; what the second adds past the first is that turn, up to its first end token
        (one of `stop_strings`).
        """
        spans = []
        cursor = 0
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            failure = "the generation prompt does not match how the template starts the turn"
            try:
                prompt, _ = self._render(messages[:index], tools, True, extra)
                upto, _ = self._render(messages[: index + 1], tools, False, extra)
                begin = len(prompt) if upto.startswith(prompt) else None
                if begin is None:
                    base, _ = self._render(messages[:index], tools, False, extra)
                    begin = _turn_body_start(base, prompt, upto)
            except PuyuError as exc:
                begin, failure = None, str(exc)
            if begin is None:
                warnings.warn(f"no assistant span for message {index}: {failure}", stacklevel=3)
                continue
            part = _cut_at_stop(upto[begin:], self.stop_strings)
            if not part:
                continue
            if begin >= cursor and text.startswith(upto[:begin] + part):
                start = begin
            else:
                # Later turns changed how this one renders (e.g. a template that treats the last
                # message specially): find the turn's text in the full render instead.
                start = text.find(part, cursor)
                if start < 0:
                    warnings.warn(f"no assistant span for message {index}: its text is not in the render", stacklevel=3)
                    continue
            spans.append((start, start + len(part)))
            cursor = start + len(part)
        return spans


def _turn_body_start(base: str, prompt: str, upto: str) -> int | None:
    """Where the assistant's own text starts in `upto` when the generation prompt is not literally
    the turn's header (the template spaces the header differently, or ends the conversation's last
    message differently): look for the prompt's non-whitespace core after the point where `upto`
    leaves `base`, and skip the whitespace the prompt puts after it."""
    if not prompt.startswith(base):
        return None
    added = prompt[len(base) :]
    core = added.strip()
    shared = _common_prefix_length(base, upto)
    if not core:
        return shared
    found = upto.find(core, shared)
    if found < 0:
        return None
    position = found + len(core)
    tail = added[added.index(core) + len(core) :]
    return position + len(tail) if upto.startswith(tail, position) else position


def _common_prefix_length(a: str, b: str) -> int:
    length = min(len(a), len(b))
    for index in range(length):
        if a[index] != b[index]:
            return index
    return length


def _cut_at_stop(part: str, stop_strings: Sequence[str]) -> str:
    """The turn up to and including its first end token: generation stops there, so anything the
    template writes after it (a newline, a marker) is not the model's to produce."""
    ends = [found + len(stop) for stop in stop_strings if stop and (found := part.find(stop)) >= 0]
    return part[: min(ends)] if ends else part


def _normalize_spans(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-empty, merged where they overlap or touch."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(span for span in spans if span[1] > span[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def assistant_mask(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[bool]:
    """True for each token whose `(start, end)` characters overlap one of the (sorted, merged) spans.

    A zero-width token counts as inside when its position is.
    """
    ends = [end for _, end in spans]
    mask = []
    for start, end in offsets:
        # First span ending after the token starts; the token is inside if that span starts before it ends.
        i = bisect.bisect_right(ends, start)
        if i == len(spans):
            mask.append(False)
        elif end > start:
            mask.append(spans[i][0] < end)
        else:
            mask.append(spans[i][0] <= start)
    return mask
