"""Tool calls in a streamed reply: content goes out as it comes until tool-call markup starts; the
markup is held back and parsed when the reply ends, then sent as `tool_calls` deltas.

Each family marks a call differently: InternLM2 with `<|action_start|>`, Qwen2 with `<tool_call>`;
a Llama 3.1 call is the whole reply (JSON, or code after `<|python_tag|>`), so a Llama reply that
starts with `{` or the tag is held back entirely.
"""

from __future__ import annotations

from typing import Any

_MARKERS = {"internlm2": ("<|action_start|>",), "qwen2": ("<tool_call>",)}
_WHOLE_REPLY_STARTS = {"llama3": ("{", "<|python_tag|>")}


def _held_suffix(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest end of `text` that could be the start of a marker."""
    best = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), 0, -1):
            if text.endswith(marker[:size]):
                best = max(best, size)
                break
    return best


class ToolCallStream:
    """Splits one streamed assistant reply into content deltas and, at the end, tool calls.

    Args:
        template: the chat template that rendered the tools (its `tool_format` and `parse_tool_calls`).
    """

    def __init__(self, template: Any) -> None:
        self.template = template
        self.markers = _MARKERS.get(template.tool_format or "", ())
        self.whole_reply_starts = _WHOLE_REPLY_STARTS.get(template.tool_format or "", ())
        self.text = ""
        self.emitted = 0
        self.in_call = False

    def feed(self, piece: str) -> str:
        """Add generated text; returns the content that can be shown now."""
        self.text += piece
        if self.in_call:
            return ""
        if self.whole_reply_starts:
            stripped = self.text.lstrip()
            if not stripped:
                return ""
            if any(stripped.startswith(s) or s.startswith(stripped) for s in self.whole_reply_starts):
                self.in_call = any(stripped.startswith(s) for s in self.whole_reply_starts)
                return ""
            self.whole_reply_starts = ()
            return self._emit(len(self.text))
        starts = [found for marker in self.markers if (found := self.text.find(marker, self.emitted)) >= 0]
        if starts:
            self.in_call = True
            return self._emit(min(starts))
        return self._emit(len(self.text) - _held_suffix(self.text[self.emitted :], self.markers))

    def _emit(self, end: int) -> str:
        out = self.text[self.emitted : end]
        self.emitted = max(self.emitted, end)
        return out

    def finish(self) -> tuple[str, list[dict[str, Any]]]:
        """End of the reply: the content not yet shown and the parsed tool calls."""
        content, calls = self.template.parse_tool_calls(self.text)
        if not calls:
            return self._emit(len(self.text)), []
        shown = self.text[: self.emitted].strip()
        # Content after the call markup (rare) is whatever the parsed content has beyond what was shown.
        rest = content[len(shown) :] if content.startswith(shown) else ""
        return rest, calls
