"""Splitting added tokens (special or not) out of text before a backend tokenizer sees it.

SentencePiece knows nothing about the chat tokens a model family adds on top of its `tokenizer.model`
(InternLM2's `<|im_start|>` lives in `tokenizer_config.json`, while the raw model only has a placeholder
piece at that id). So the text is cut into plain segments, which go to the backend, and added-token
matches, which map straight to their ids. Matching is leftmost, longest first, and honours the
`lstrip` / `rstrip` / `single_word` flags the way Hugging Face tokenizers do.

Besides added tokens the splitter can protect *literals*: strings that must never reach the backend
as-is (for example the surface of a placeholder piece that an added token shadows). The caller decides
how to encode those.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

TEXT = "text"
ADDED = "added"
LITERAL = "literal"


@dataclass(frozen=True)
class AddedToken:
    """A token matched in raw text before the backend runs.

    Args:
        content: The exact string to match.
        id: The token id it maps to.
        special: Whether `decode(..., skip_special_tokens=True)` drops it.
        lstrip: Also swallow whitespace on its left.
        rstrip: Also swallow whitespace on its right.
        single_word: Only match when not glued to word characters on either side.
        normalized: Kept for round-tripping Hugging Face configs; matching is always on raw text.
    """

    content: str
    id: int
    special: bool = True
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False
    normalized: bool = False

    def to_config(self) -> dict[str, Any]:
        """The `added_tokens_decoder` entry transformers writes for this token."""
        return {
            "content": self.content,
            "lstrip": self.lstrip,
            "normalized": self.normalized,
            "rstrip": self.rstrip,
            "single_word": self.single_word,
            "special": self.special,
        }

    @classmethod
    def from_config(cls, token_id: int, entry: Mapping[str, Any] | str) -> AddedToken:
        """Build from an `added_tokens_decoder` entry (a dict, or just the content string)."""
        if isinstance(entry, str):
            return cls(content=entry, id=token_id)
        return cls(
            content=str(entry["content"]),
            id=token_id,
            special=bool(entry.get("special", True)),
            lstrip=bool(entry.get("lstrip", False)),
            rstrip=bool(entry.get("rstrip", False)),
            single_word=bool(entry.get("single_word", False)),
            normalized=bool(entry.get("normalized", False)),
        )


class Segment(NamedTuple):
    """A piece of the input: `text[start:end]` is plain text, an added token, or a protected literal."""

    start: int
    end: int
    kind: str  # TEXT, ADDED or LITERAL
    token_id: int | None  # the added token's id for ADDED, else None


_WORD = re.compile(r"\w")


class AddedTokenSplitter:
    """Cuts text into plain segments, added-token matches and protected literals.

    Args:
        tokens: The added tokens to match.
        literals: Strings to isolate as LITERAL segments (an added token with the same content wins).
    """

    def __init__(self, tokens: Iterable[AddedToken], literals: Iterable[str] = ()) -> None:
        self._tokens: dict[str, AddedToken] = {}
        for tok in tokens:
            if tok.content:
                self._tokens[tok.content] = tok
        self._literals = {lit for lit in literals if lit and lit not in self._tokens}
        alternatives = sorted({*self._tokens, *self._literals}, key=lambda s: (-len(s), s))
        # Python's regex alternation takes the first alternative that matches, so sorting longest
        # first gives leftmost-longest matching.
        self._pattern = re.compile("|".join(map(re.escape, alternatives))) if alternatives else None

    def split(self, text: str) -> list[Segment]:
        """Split `text`; the segments cover it in order (plain segments are never empty)."""
        if self._pattern is None or not text:
            return [Segment(0, len(text), TEXT, None)] if text else []
        segments: list[Segment] = []
        cursor = 0  # end of the last emitted segment
        pos = 0  # where the next search starts
        while pos <= len(text):
            match = self._pattern.search(text, pos)
            if match is None:
                break
            start, end = match.span()
            tok = self._tokens.get(match.group())
            if tok is not None and tok.single_word and not _is_single_word(text, start, end):
                pos = start + 1
                continue
            if tok is not None and tok.lstrip:
                while start > cursor and text[start - 1].isspace():
                    start -= 1
            if tok is not None and tok.rstrip:
                while end < len(text) and text[end].isspace():
                    end += 1
            if start > cursor:
                segments.append(Segment(cursor, start, TEXT, None))
            if tok is not None:
                segments.append(Segment(start, end, ADDED, tok.id))
            else:
                segments.append(Segment(start, end, LITERAL, None))
            cursor = pos = end
        if cursor < len(text):
            segments.append(Segment(cursor, len(text), TEXT, None))
        return segments


def _is_single_word(text: str, start: int, end: int) -> bool:
    before = start > 0 and _WORD.match(text[start - 1]) is not None
    after = end < len(text) and _WORD.match(text[end]) is not None
    return not before and not after
