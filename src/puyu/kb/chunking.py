"""Structure-aware chunks with exact character spans.

A document is cut into blocks that respect its structure (Markdown sections and fenced code, paragraphs,
top-level definitions in source code), blocks are packed into chunks of at most `chunk_size` characters
within one section, and a block that is still too long is cut at sentence ends (Chinese 。！？；and
Latin .!? followed by a space) and, as a last resort, at the size limit.

Every chunk's `text` is exactly `document_text[start:end]`; the Markdown heading path the chunk sits
under is kept beside it in `heading` (it is indexed and shown to the model, but it is not part of the span).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

DEFAULT_CHUNK_SIZE = 800
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~)")
_BLANK_LINES = re.compile(r"\n[ \t]*\n")
# A sentence ends after Chinese/Japanese full stops (no space follows them) or after .!? and a space.
_SENTENCE_END = re.compile(r"[。！？；!?](?=[^\n])|[.!?;:](?=\s)|\n")
# A new top-level definition in common languages starts a new code block.
_CODE_DEFINITION = re.compile(
    r"^(?:def |async def |class |function |export |func |fn |pub |impl |struct |interface |enum |public |private "
    r"|protected |static |template |namespace |[A-Za-z_][\w:<>\*& ]*\([^;]*\)\s*\{?\s*$)"
)
CODE_SUFFIXES = frozenset(
    (".py", ".js", ".ts", ".tsx", ".jsx", ".go", ".rs", ".java", ".c", ".h", ".cc", ".cpp", ".hpp", ".sh", ".rb")
)


@dataclass(frozen=True)
class Span:
    """A piece of a document: characters [start, end) and the heading path above it."""

    start: int
    end: int
    heading: str = ""


def _trimmed(text: str, start: int, end: int, heading: str) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Span(start, end, heading) if end > start else None


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(offset, line without its newline) for every line."""
    offset = 0
    for line in text.split("\n"):
        yield offset, line
        offset += len(line) + 1


def markdown_blocks(text: str) -> list[Span]:
    """Sections under their heading path, each cut into paragraphs; fenced code stays whole; headings are
    blocks of their own so the chunk under a heading starts with it."""
    blocks: list[Span] = []
    path: list[tuple[int, str]] = []
    block_start = 0
    in_fence = False

    def close(end: int) -> None:
        span = _trimmed(text, block_start, end, " > ".join(title for _, title in path))
        if span is not None:
            blocks.append(span)

    for offset, line in _lines(text):
        if _FENCE.match(line):
            if not in_fence:
                close(offset)
                block_start = offset
            in_fence = not in_fence
            if not in_fence:  # the closing fence ends the code block
                close(offset + len(line))
                block_start = offset + len(line)
            continue
        if in_fence:
            continue
        heading = _HEADING.match(line)
        if heading:
            close(offset)
            level = len(heading.group(1))
            path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, heading.group(2).strip())]
            block_start = offset
        elif not line.strip():
            close(offset)
            block_start = offset
    close(len(text))
    return blocks


def paragraph_blocks(text: str) -> list[Span]:
    """Paragraphs: runs of text between blank lines."""
    blocks: list[Span] = []
    start = 0
    for match in _BLANK_LINES.finditer(text):
        span = _trimmed(text, start, match.start(), "")
        if span is not None:
            blocks.append(span)
        start = match.end()
    span = _trimmed(text, start, len(text), "")
    if span is not None:
        blocks.append(span)
    return blocks


def code_blocks(text: str) -> list[Span]:
    """Top-level definitions (and what precedes the first one): a line at column 0 that opens a function,
    class or similar starts a new block; decorators and comments right above it stay with it."""
    starts = [0]
    pending: int | None = None  # where the decorators/comments right above the next line began
    for offset, line in _lines(text):
        if line and not line[0].isspace() and _CODE_DEFINITION.match(line):
            starts.append(pending if pending is not None else offset)
            pending = None
        elif line.startswith(("@", "#", "//", "/*")) and not line.startswith("#!"):
            pending = offset if pending is None else pending
        elif not (line.startswith(" *") and pending is not None):
            pending = None
    starts = [*sorted(set(starts)), len(text)]
    spans = (_trimmed(text, a, b, "") for a, b in itertools.pairwise(starts))
    return [span for span in spans if span is not None]


def _sentences(text: str, span: Span) -> list[Span]:
    pieces: list[Span] = []
    start = span.start
    for match in _SENTENCE_END.finditer(text, span.start, span.end):
        piece = _trimmed(text, start, match.end(), span.heading)
        if piece is not None:
            pieces.append(piece)
        start = match.end()
    piece = _trimmed(text, start, span.end, span.heading)
    if piece is not None:
        pieces.append(piece)
    return pieces


def _fit(text: str, span: Span, size: int) -> list[Span]:
    """A block cut to pieces of at most `size` characters: at sentence ends, else at the limit."""
    if span.end - span.start <= size:
        return [span]
    pieces: list[Span] = []
    for sentence in _sentences(text, span):
        for start in range(sentence.start, sentence.end, size):
            piece = _trimmed(text, start, min(start + size, sentence.end), span.heading)
            if piece is not None:
                pieces.append(piece)
    return pieces


def chunk_spans(text: str, kind: str = "text", chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[Span]:
    """The chunks of one document.

    Args:
        text: the document.
        kind: "markdown", "code" or "text": how the document's structure is read.
        chunk_size: the most characters in a chunk (a block longer than that is cut at sentence ends).

    Returns:
        Spans in document order, not overlapping, each within one Markdown section.
    """
    if chunk_size < 16:
        raise ValueError(f"chunk_size must be at least 16 characters, got {chunk_size}")
    reader = {"markdown": markdown_blocks, "code": code_blocks}.get(kind, paragraph_blocks)
    pieces = [piece for block in reader(text) for piece in _fit(text, block, chunk_size)]
    chunks: list[Span] = []
    current: Span | None = None
    for piece in pieces:
        if current is not None and piece.heading == current.heading and piece.end - current.start <= chunk_size:
            current = Span(current.start, piece.end, current.heading)
            continue
        if current is not None:
            chunks.append(current)
        current = piece
    if current is not None:
        chunks.append(current)
    return chunks


def kind_of(path: str) -> str:
    """How a file's structure is read, from its name."""
    name = path.lower()
    if name.endswith((".md", ".markdown")):
        return "markdown"
    if any(name.endswith(suffix) for suffix in CODE_SUFFIXES):
        return "code"
    return "text"
