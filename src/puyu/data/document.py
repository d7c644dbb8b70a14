"""The record every data stage passes on, and the tally of what each stage did to the records.

A `Document` keeps where it came from (`source` file and `id`), so a removal in the report can be
traced back to the input line. A `Tally` counts documents and bytes per outcome of each step; bad input
(undecodable bytes, malformed lines, unreadable files) goes to the tally's `problems` with file and line
instead of stopping the run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Document:
    """One text document.

    Args:
        text: the content.
        id: unique and stable across runs: "<source>:<line or index>" by default.
        source: the input file it came from.
        meta: anything else the reader kept (title, url, language, original fields).
    """

    text: str
    id: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "text": self.text, "meta": self.meta}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Document:
        return cls(text=row["text"], id=row["id"], source=row["source"], meta=row.get("meta") or {})


@dataclass
class Problem:
    """Input that could not be used as it was: where, and what."""

    source: str
    line: int | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "message": self.message}


# Keep the report bounded on a corpus with millions of bad lines (the counts stay exact), while every
# kind of problem keeps examples, however many of another kind came first.
MAX_PROBLEMS_PER_KIND = 50


@dataclass
class Tally:
    """Counts of documents and bytes per (step, outcome), plus the problems met on the way.

    Steps record outcomes such as ("read", "ok"), ("length", "removed"), ("pii", "email"). Tallies of
    different workers add up with `merge`.
    """

    docs: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0

    def count(self, step: str, outcome: str, text: str | None = None, n: int = 1) -> None:
        key = f"{step}/{outcome}"
        self.docs[key] += n
        if text is not None:
            self.bytes[key] += len(text.encode("utf-8", errors="surrogatepass"))

    def problem(self, source: str, line: int | None, message: str) -> None:
        self.problem_count += 1
        self._keep(Problem(source, line, message))

    def _keep(self, problem: Problem) -> None:
        key = "problems/" + problem.message.split(":")[0]
        self.docs[key] += 1
        if self.docs[key] <= MAX_PROBLEMS_PER_KIND:
            self.problems.append(problem)

    def merge(self, other: Tally) -> None:
        kept = Counter("problems/" + p.message.split(":")[0] for p in self.problems)
        for problem in other.problems:
            key = "problems/" + problem.message.split(":")[0]
            if kept[key] < MAX_PROBLEMS_PER_KIND:
                kept[key] += 1
                self.problems.append(problem)
        self.docs.update(other.docs)
        self.bytes.update(other.bytes)
        self.problem_count += other.problem_count

    def to_json(self) -> dict[str, Any]:
        return {
            "docs": dict(sorted(self.docs.items())),
            "bytes": dict(sorted(self.bytes.items())),
            "problem_count": self.problem_count,
            "problems": [p.to_json() for p in self.problems],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Tally:
        return cls(
            docs=Counter(raw.get("docs", {})),
            bytes=Counter(raw.get("bytes", {})),
            problems=[Problem(**p) for p in raw.get("problems", [])],
            problem_count=int(raw.get("problem_count", 0)),
        )
