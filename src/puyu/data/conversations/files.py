"""Converting and checking whole chat or preference files, with a per-line account of what was wrong.

Inputs are JSONL (one record a line; blank lines are skipped) or a JSON list of records (a file
whose first character is "["). A bad line never stops a run: it is skipped and reported as
"<file>:<line>: <reason>" (for a JSON list, <line> is the record's 1-based position in the list).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from puyu.data.conversations.chat import CHAT_FORMATS, check_format, detect_chat_format, normalize_chat_record
from puyu.data.conversations.preference import (
    PREFERENCE_FORMATS,
    detect_preference_format,
    normalize_preference_record,
)
from puyu.data.document import Tally
from puyu.errors import PuyuError, one_line
from puyu.io import atomic_path

Kind = Literal["chat", "preference"]
PathLike = str | os.PathLike[str]

_KINDS: dict[str, tuple[tuple[str, ...], Callable[[Any], str], Callable[..., dict[str, Any]]]] = {
    "chat": (CHAT_FORMATS, detect_chat_format, normalize_chat_record),
    "preference": (PREFERENCE_FORMATS, detect_preference_format, normalize_preference_record),
}
_BOM = b"\xef\xbb\xbf"


@dataclass
class ConversionReport:
    """What a conversion (or a check) found.

    Attributes:
        kind: "chat" or "preference".
        formats: records per detected (or forced) input format, valid or not.
        converted: records written (when only checking: records that would be).
        invalid: records skipped; each has a problem in `tally`.
        warnings: records kept that deserve a look, per reason (e.g. "empty assistant turn").
        tally: the problems, with file and line; up to `MAX_PROBLEMS_PER_KIND` examples of each kind are kept,
            counts are exact.
    """

    kind: str = "chat"
    formats: Counter[str] = field(default_factory=Counter)
    converted: int = 0
    invalid: int = 0
    warnings: Counter[str] = field(default_factory=Counter)
    tally: Tally = field(default_factory=Tally)

    @property
    def errors(self) -> list[str]:
        """The kept problems as "<file>:<line>: <reason>"."""
        return [
            f"{p.source}:{p.line}: {p.message}" if p.line is not None else f"{p.source}: {p.message}"
            for p in self.tally.problems
        ]

    def fail(self, source: str, line: int | None, message: str) -> None:
        """Count one record as invalid, with where and why."""
        self.invalid += 1
        self.tally.problem(source, line, message)

    def summary(self) -> str:
        """One line for a terminal: counts per format, converted, invalid and warnings."""
        formats = ", ".join(f"{name} {count}" for name, count in sorted(self.formats.items())) or "none"
        line = f"{self.kind}: {self.converted} converted, {self.invalid} invalid (formats: {formats})"
        if self.warnings:
            line += "; warnings: " + ", ".join(f"{reason} {count}" for reason, count in sorted(self.warnings.items()))
        return line

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "formats": dict(sorted(self.formats.items())),
            "converted": self.converted,
            "invalid": self.invalid,
            "warnings": dict(sorted(self.warnings.items())),
            "problem_count": self.tally.problem_count,
            "problems": [problem.to_json() for problem in self.tally.problems],
        }


def convert_chat_file(
    inputs: Sequence[PathLike] | PathLike,
    output: PathLike,
    *,
    kind: Kind = "chat",
    format: str | None = None,
    strict: bool = False,
) -> ConversionReport:
    """Convert instruction or preference data files into one JSONL file in the common format.

    Records are streamed from JSONL (a JSON list is parsed whole) and written one per line; the
    output appears only once complete (temporary file + rename), so a failed run leaves nothing
    half-written.

    Args:
        inputs: one or more JSONL / JSON-list files, read in order.
        output: the JSONL file to write.
        kind: "chat" (see `normalize_chat_record`) or "preference" (see `normalize_preference_record`).
        format: force one input format for every record instead of detecting it per record.
        strict: stop at the first bad record with a `PuyuError` naming "<file>:<line>" (nothing is
            written); by default bad records are skipped and listed in the report.

    Returns:
        The report: counts per format, converted, invalid, warnings and the per-line errors.

    Raises:
        PuyuError: an unknown kind or format, a missing input file, or (strict) the first bad record.
    """
    paths = _input_paths(inputs)
    with atomic_path(output) as tmp, tmp.open("w", encoding="utf-8") as sink:

        def write(record: dict[str, Any]) -> None:
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")

        return _run(paths, kind, format, strict, write)


def validate_chat_file(path: PathLike, kind: Kind = "chat", *, format: str | None = None) -> ConversionReport:
    """Check a chat or preference file without writing anything (what `convert_chat_file` would report).

    Args:
        path: a JSONL or JSON-list file.
        kind: "chat" or "preference".
        format: force one input format instead of detecting it per record.

    Raises:
        PuyuError: an unknown kind or format, or a missing file.
    """
    return _run(_input_paths(path), kind, format, False, None)


def _run(
    paths: list[Path], kind: str, format: str | None, strict: bool, write: Callable[[dict[str, Any]], None] | None
) -> ConversionReport:
    if kind not in _KINDS:
        raise PuyuError(f"unknown data kind {kind!r} (expected chat or preference)")
    known, detect, normalize = _KINDS[kind]
    check_format(format, known, kind)
    report = ConversionReport(kind=kind)
    for path in paths:
        for line, record in read_records(path):
            try:
                if isinstance(record, Unreadable):
                    raise PuyuError(record.message)
                name = format or detect(record)
                report.formats[name] += 1
                out = normalize(record, format=name)
            except PuyuError as exc:
                report.fail(str(path), line, str(exc))
                if strict:
                    where = f"{path}:{line}" if line is not None else str(path)
                    raise PuyuError(f"{where}: {exc}") from None
                continue
            report.converted += 1
            report.warnings.update(_warnings(kind, out))
            if write is not None:
                write(out)
    return report


def _warnings(kind: str, record: dict[str, Any]) -> list[str]:
    """Reasons to look at a record that is still kept (empty replies train the model to say nothing)."""
    if kind == "chat":
        trained = [m for m in record["messages"] if m["role"] == "assistant" and m.get("loss", True)]
        return ["empty assistant turn"] if any(_is_empty_reply(m) for m in trained) else []
    replies = record["chosen"] + record["rejected"]
    return ["empty response"] if any(_is_empty_reply(m) for m in replies if m["role"] == "assistant") else []


def _is_empty_reply(message: dict[str, Any]) -> bool:
    return not message["content"].strip() and not message.get("tool_calls")


def _input_paths(inputs: Sequence[PathLike] | PathLike) -> list[Path]:
    paths = [Path(inputs)] if isinstance(inputs, (str, os.PathLike)) else [Path(path) for path in inputs]
    if not paths:
        raise PuyuError("no input files given")
    for path in paths:
        if not path.exists():
            raise PuyuError(f"{path}: no such file")
        if not path.is_file():
            raise PuyuError(f"{path}: not a file")
    return paths


@dataclass
class Unreadable:
    """A line (or file) that did not parse into a record."""

    message: str


def read_records(path: Path) -> Iterator[tuple[int | None, Any]]:
    """(line or list position, parsed record or `Unreadable`) for each record of a file."""
    try:
        if _starts_with_list(path):
            yield from _read_json_list(path)
        else:
            yield from _read_jsonl(path)
    except OSError as exc:
        # Only read errors land here: errors in the caller's loop body do not enter the generator.
        yield None, Unreadable(f"unreadable file: {one_line(exc)}")


def _starts_with_list(path: Path) -> bool:
    with path.open("rb") as stream:
        chunk = stream.read(4096).removeprefix(_BOM)
        while chunk:
            stripped = chunk.lstrip()
            if stripped:
                return stripped.startswith(b"[")
            chunk = stream.read(4096)
    return False


def _read_jsonl(path: Path) -> Iterator[tuple[int | None, Any]]:
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, 1):
            if number == 1:
                raw = raw.removeprefix(_BOM)
            if not raw.strip():
                continue
            try:
                # Without the line end, a JSON error's column points into the line, not past its end.
                text = raw.decode("utf-8").rstrip()
            except UnicodeDecodeError as exc:
                yield number, Unreadable(f"invalid utf-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}")
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, Unreadable(f"malformed json: {exc.msg} at column {exc.colno}")


def _read_json_list(path: Path) -> Iterator[tuple[int | None, Any]]:
    data = path.read_bytes().removeprefix(_BOM)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        yield (
            None,
            Unreadable(f"invalid utf-8: byte 0x{data[exc.start]:02x} on line {line}; the JSON list was not read"),
        )
        return
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        yield (
            None,
            Unreadable(f"malformed json: {exc.msg} (line {exc.lineno} column {exc.colno}); the JSON list was not read"),
        )
        return
    yield from enumerate(records, 1)
