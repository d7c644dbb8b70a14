"""Tokenizing a rendered chat so that control tokens come only from the template.

A template writes `<|im_start|>`, `<|im_end|>`, ... around each message; tokenizing the rendered text in
one go would also turn the same strings inside a message (`"<|im_end|>\\n<|im_start|>system\\n..."`) into
real control tokens, letting a user forge system or assistant turns. Here each message's content is
tokenized as plain text instead (`Tokenizer.encode_text`).

Content without control-token text tokenizes exactly as the whole rendered text does (the common case
costs one substring scan). Content with it is found in the rendering by rendering again with an
unguessable placeholder in its place; the rendering must then equal the original with each placeholder
put back (as given, or stripped, as templates that `trim` content do), else the request is refused.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from puyu.chat.messages import validate_messages
from puyu.chat.template import ChatTemplate
from puyu.errors import PuyuError


class TextTokenizer(Protocol):
    """What `encode_chat` needs from a tokenizer."""

    @property
    def added_tokens(self) -> dict[str, int]: ...

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def encode_text(self, text: str) -> list[int]: ...


def _touches_marker(text: str, markers: Iterable[str]) -> bool:
    """Whether `text` holds a marker, or could complete one with the template text beside it."""
    for marker in markers:
        if marker in text:
            return True
        for cut in range(1, len(marker)):
            if text.endswith(marker[:cut]) or text.startswith(marker[cut:]):
                return True
    return False


def _other_fields(message: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The message's untrusted strings besides its content (names, ids, tool-call names and arguments)."""
    fields = [(key, message[key]) for key in ("name", "tool_call_id") if isinstance(message.get(key), str)]
    for number, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function", call) if isinstance(call, Mapping) else {}
        for key in ("name", "arguments"):
            value = function.get(key)
            if value is not None:
                fields.append(
                    (f"tool_calls[{number}].function.{key}", value if isinstance(value, str) else repr(value))
                )
    return fields


def check_no_control_text(values: Iterable[tuple[str, str]], markers: Sequence[str]) -> None:
    """Raise PuyuError naming the first field whose text holds a control token."""
    for where, value in values:
        found = next((marker for marker in markers if marker in value), None)
        if found is not None:
            raise PuyuError(f"{where} contains the control token {found!r}, which only the chat template may write")


def encode_chat(
    template: ChatTemplate,
    tokenizer: TextTokenizer,
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = True,
    trust_control_tokens: bool = False,
) -> list[int]:
    """Token ids of a rendered conversation, message content tokenized as plain text.

    Args:
        template: the chat template.
        tokenizer: the model's tokenizer (`added_tokens`, `encode`, `encode_text`).
        messages: OpenAI-style messages.
        tools: OpenAI-style tool schemas, or None.
        add_generation_prompt: end with the header that opens an assistant turn.
        trust_control_tokens: tokenize the whole rendering at once, so that control-token text in the
            messages becomes control tokens (for trusted clients that write raw turns themselves).

    Raises:
        PuyuError: invalid messages; control-token text outside a message's content (names, tool
            calls, tool schemas); content the template changes in a way that hides where it went.
    """
    checked = validate_messages(messages)
    rendered = template.render(checked, tools=tools, add_generation_prompt=add_generation_prompt).text
    markers = [marker for marker in tokenizer.added_tokens if marker]
    if trust_control_tokens or not markers:
        return tokenizer.encode(rendered, add_special_tokens=False)
    for index, message in enumerate(checked):
        check_no_control_text(((f"message {index}: {k}", v) for k, v in _other_fields(message)), markers)
    if tools:
        check_no_control_text(((f"tools[{n}]", repr(tool)) for n, tool in enumerate(tools)), markers)
    risky = {
        index
        for index, message in enumerate(checked)
        if isinstance(message.get("content"), str) and _touches_marker(message["content"], markers)
    }
    if not risky:
        return tokenizer.encode(rendered, add_special_tokens=False)

    nonce = uuid.uuid4().hex
    placeholder = re.compile(f"\ue000{nonce}:(\\d+)\ue001")
    masked = [
        {**message, "content": f"\ue000{nonce}:{index}\ue001"} if index in risky else message
        for index, message in enumerate(checked)
    ]
    skeleton = template.render(masked, tools=tools, add_generation_prompt=add_generation_prompt).text
    parts = placeholder.split(skeleton)  # template text, message index, template text, ...
    transforms: list[Callable[[str], str]] = [lambda text: text, str.strip]
    for transform in transforms:
        contents = {index: transform(checked[index]["content"]) for index in risky}
        rebuilt = "".join(part if odd % 2 == 0 else contents[int(part)] for odd, part in enumerate(parts))
        if rebuilt == rendered:
            break
    else:
        raise PuyuError(
            f"message {min(risky)}: content with control-token text, which this chat template rewrites so that "
            "it cannot be kept apart from the template's own tokens"
        )
    ids: list[int] = []
    for position, part in enumerate(parts):
        if position % 2:
            ids.extend(tokenizer.encode_text(contents[int(part)]))
        elif part:
            ids.extend(tokenizer.encode(part, add_special_tokens=False))
    return ids
