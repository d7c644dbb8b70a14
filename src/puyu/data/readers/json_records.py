"""JSON Lines and JSON files: one document per record, read one record at a time.

A `.json` file holds one object (one document) or a list of objects; the list is parsed element by element
from a text stream, so a large file never sits in memory whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import one_line
from ..document import Document, Tally
from .streams import iter_lines, iter_text_chunks, open_binary

_DECODER = json.JSONDecoder()
_NON_SPACE = re.compile(r"[^ \t\n\r]")
# A JSON syntax error this close to the end of the buffered text may only mean the value goes on in the
# next chunk (a cut `true`, number or escape); further back it is a real error.
_CUT_VALUE_CHARS = 16


def text_keys(text_field: str) -> tuple[str, ...]:
    """The fields tried for the text, in order: `text_field`, and "content" when it is the default "text"."""
    return (text_field, "content") if text_field == "text" else (text_field,)


def record_to_document(
    record: dict[str, Any],
    *,
    source: str,
    default_id: str,
    line: int | None,
    text_field: str,
    id_field: str | None,
    tally: Tally,
) -> Document | None:
    """The document of one record (a JSON object or a table row); None, counted as a problem, without text.

    Args:
        record: field name -> value.
        source: the file, for `Document.source` and problems.
        default_id: the id when the record has no `id_field` value.
        line: the line (or row) of the record, for problems.
        text_field: the field holding the text (see `text_keys`).
        id_field: the field holding the id, or None.
        tally: where problems go.
    """
    key = next((k for k in text_keys(text_field) if k in record), None)
    if key is None:
        tally.problem(source, line, f"missing text field: no {text_field!r} in the record")
        return None
    text = record[key]
    if not isinstance(text, str):
        kind = "null" if text is None else type(text).__name__
        tally.problem(source, line, f"missing text field: {key!r} is {kind}, not a string")
        return None
    raw_id = record.get(id_field) if id_field else None
    doc_id = default_id if raw_id is None or raw_id == "" else str(raw_id)
    meta = {k: v for k, v in record.items() if k != key}
    nested = meta.get("meta")
    if isinstance(nested, dict):
        # Records written by this pipeline keep extra fields under "meta"; lift them back up.
        del meta["meta"]
        meta = {**nested, **meta}
    return Document(text=text, id=doc_id, source=source, meta=meta)


def read_jsonl(path: Path, tally: Tally, text_field: str, id_field: str | None) -> Iterator[Document]:
    """One document per line of a JSON Lines file (plain, .gz or .zst); blank lines are skipped."""
    source = str(path)
    records = 0
    with open_binary(path) as stream:
        for number, line in iter_lines(stream, tally, source):
            if not line.strip():
                continue
            records += 1
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                tally.problem(source, number, f"malformed json: {exc.msg.removesuffix(' at')} at column {exc.colno}")
                continue
            except (ValueError, RecursionError) as exc:  # integers over the digit limit, absurd nesting
                tally.problem(source, number, f"malformed json: {type(exc).__name__}")
                continue
            if not isinstance(record, dict):
                tally.problem(source, number, f"not an object: the line holds a {type(record).__name__}")
                continue
            doc = record_to_document(
                record,
                source=source,
                default_id=f"{source}:{number}",
                line=number,
                text_field=text_field,
                id_field=id_field,
                tally=tally,
            )
            if doc is not None:
                yield doc
    if records == 0:
        tally.problem(source, None, "empty file")


class _JsonText:
    """Decoded text of a file, read chunk by chunk, with the position of the next unread character."""

    def __init__(self, chunks: Iterator[str]) -> None:
        self._chunks = chunks
        self.text = ""
        self.pos = 0
        self.at_end = False
        self._line = 1
        self._line_counted_to = 0

    def _read_more(self, at_least: int) -> bool:
        """Append at least `at_least` characters (fewer at the end of the file); False when none were left."""
        self.line()
        parts = [self.text[self.pos :]]
        added = 0
        while added < at_least:
            chunk = next(self._chunks, None)
            if chunk is None:
                self.at_end = True
                break
            parts.append(chunk)
            added += len(chunk)
        self.text = "".join(parts)  # one join: appending chunk by chunk would copy the text again each time
        self.pos = self._line_counted_to = 0
        return added > 0

    def line(self) -> int:
        """The 1-based line of the next unread character."""
        self._line += self.text.count("\n", self._line_counted_to, self.pos)
        self._line_counted_to = self.pos
        return self._line

    def peek(self) -> str | None:
        """The next character that is not white space (left unread), or None at the end of the file."""
        while True:
            match = _NON_SPACE.search(self.text, self.pos)
            if match:
                self.pos = match.start()
                return self.text[self.pos]
            self.pos = len(self.text)
            if not self._read_more(1):
                return None

    def value(self) -> Any:
        """Decode the JSON value at the current position, reading more text while it is incomplete.

        Raises:
            ValueError: malformed JSON (`json.JSONDecodeError`) or a number past Python's digit limit.
        """
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
                # A number cut by the chunk boundary decodes without error; only trust a value followed by text.
                if end < len(self.text) or self.at_end:
                    self.pos = end
                    return value
            except json.JSONDecodeError as exc:
                cut = exc.pos >= len(self.text) - _CUT_VALUE_CHARS or exc.msg.startswith("Unterminated string")
                if self.at_end or not cut:
                    raise
            # Read at least as much again as is buffered, so a long value costs linear time overall.
            self._read_more(max(len(self.text) - self.pos, 1 << 16))


def read_json(path: Path, tally: Tally, text_field: str, id_field: str | None) -> Iterator[Document]:
    """Documents of a JSON file holding one object or a list of objects (plain, .gz or .zst).

    A single object is one document with id "<path>"; list items get "<path>:<1-based index>". A malformed
    file keeps the documents before the error.
    """
    source = str(path)
    with open_binary(path) as stream:
        text = _JsonText(iter_text_chunks(stream, tally, source))
        try:
            first = text.peek()
            if first is None:
                tally.problem(source, None, "empty file")
                return
            if first != "[":
                line = text.line()
                value = text.value()
                if not isinstance(value, dict):
                    tally.problem(source, line, f"not an object: the file holds a {type(value).__name__}")
                else:
                    doc = record_to_document(
                        value,
                        source=source,
                        default_id=source,
                        line=line,
                        text_field=text_field,
                        id_field=id_field,
                        tally=tally,
                    )
                    if doc is not None:
                        yield doc
            else:
                text.pos += 1
                index = 0
                while True:
                    char = text.peek()
                    if char == "]":
                        text.pos += 1
                        break
                    if index:
                        if char != ",":
                            raise ValueError(f"expected ',' or ']' after item {index}")
                        text.pos += 1
                        text.peek()
                    line = text.line()
                    value = text.value()
                    index += 1
                    if not isinstance(value, dict):
                        tally.problem(source, line, f"not an object: item {index} is a {type(value).__name__}")
                        continue
                    doc = record_to_document(
                        value,
                        source=source,
                        default_id=f"{source}:{index}",
                        line=line,
                        text_field=text_field,
                        id_field=id_field,
                        tally=tally,
                    )
                    if doc is not None:
                        yield doc
                if index == 0:
                    tally.problem(source, None, "empty file: an empty list")
            if text.peek() is not None:
                tally.problem(source, text.line(), "malformed json: extra data after the top-level value")
        except json.JSONDecodeError as exc:
            tally.problem(source, text.line(), f"malformed json: {exc.msg}")
        except (ValueError, RecursionError) as exc:
            tally.problem(source, text.line(), f"malformed json: {one_line(exc)}")
