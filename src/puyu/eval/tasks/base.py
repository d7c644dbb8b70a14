"""What a task is: documents with a query, options or a reference answer, few-shot examples, and how to score.

Loaders turn a benchmark's files into a `Task`; prompts, evaluators and metrics only ever see `Task` and `Doc`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from puyu.errors import PuyuError

TaskKind = Literal["multiple_choice", "generation", "perplexity"]
DIMENSIONS = ("examination", "knowledge", "language", "understanding", "reasoning", "safety")


@dataclass
class Doc:
    """One evaluation sample.

    Args:
        id: stable identifier inside the task (used in predictions and the cache).
        query: the question as prompted, e.g. "…\\nA. x\\nB. y\\nAnswer:".
        choices: multiple choice: the option texts scored as continuations (without the target delimiter).
        gold: index of the right choice (multiple choice) or the reference answer (generation).
        subject: the subset this sample belongs to (MMLU subject …); "" for single-subset tasks.
        shots: few-shot examples as (query, answer) pairs, in prompt order.
        description: text before the shots (MMLU's "The following are multiple choice questions …").
        text: the text to score (perplexity tasks).
    """

    id: str
    query: str = ""
    choices: list[str] = field(default_factory=list)
    gold: int | str | None = None
    subject: str = ""
    shots: list[tuple[str, str]] = field(default_factory=list)
    description: str = ""
    text: str = ""


@dataclass
class Task:
    """A loaded benchmark.

    Args:
        name: task name as given on the command line.
        kind: multiple_choice (log-likelihood of each option), generation (answer extraction) or perplexity.
        docs: the samples.
        dimension: the capability it measures (one of `DIMENSIONS`).
        metric: accuracy | exact_match | contains | numeric_match | perplexity.
        target_delimiter: between a query and its answer ("Answer:" + " A").
        fewshot_delimiter: between shots.
        acc_norm: also report accuracy with log-likelihoods normalised by option length (lm-eval's acc_norm).
        max_tokens, stop: generation limits.
        extractor: how to take the answer out of generated text: "gsm8k" | "choice" | "text".
        chat: force chat prompts on/off for this task (None: the model's default).
        subject_groups: subject → category (MMLU's stem, humanities, …): accuracy is also reported per category.
    """

    name: str
    kind: TaskKind
    docs: list[Doc]
    dimension: str = "knowledge"
    metric: str = "accuracy"
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    acc_norm: bool = False
    max_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    extractor: str = "text"
    chat: bool | None = None
    subject_groups: dict[str, str] = field(default_factory=dict)

    @property
    def subjects(self) -> list[str]:
        seen: dict[str, None] = {}
        for doc in self.docs:
            seen.setdefault(doc.subject, None)
        return list(seen)


class TaskFormatError(PuyuError):
    """A task's files are missing or not in the expected layout."""


def read_csv_rows(path: Path, *, header: bool, columns: int, layout: str) -> list[list[str]]:
    """Rows of a CSV file with at least `columns` cells each; the header row is dropped when `header`."""
    if not path.is_file():
        raise TaskFormatError(f"{path}: file not found (expected {layout})")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    if header:
        rows = rows[1:]
    for number, row in enumerate(rows, start=2 if header else 1):
        if len(row) < columns:
            raise TaskFormatError(
                f"{path}:{number}: {len(row)} columns, expected at least {columns} (expected {layout})"
            )
    return rows


def read_csv_dicts(path: Path, *, required: list[str], layout: str) -> list[dict[str, str]]:
    """Records of a CSV file with a header row that names at least `required`."""
    if not path.is_file():
        raise TaskFormatError(f"{path}: file not found (expected {layout})")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        names = reader.fieldnames or []
        missing = [name for name in required if name not in names]
        if missing:
            raise TaskFormatError(f"{path}: header lacks {', '.join(missing)} (expected {layout})")
        return list(reader)


def iter_jsonl(path: Path, *, layout: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-empty line of a JSONL file."""
    if not path.is_file():
        raise TaskFormatError(f"{path}: file not found (expected {layout})")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskFormatError(f"{path}:{number}: not JSON ({exc.msg}); expected {layout}") from None
            if not isinstance(record, dict):
                raise TaskFormatError(f"{path}:{number}: not a JSON object; expected {layout}")
            yield number, record


def letter_index(answer: str, count: int, where: str) -> int:
    """'A'.. → 0.., checked against the number of options."""
    index = ord(answer.strip().upper()[:1] or "?") - ord("A")
    if not 0 <= index < count:
        raise TaskFormatError(f"{where}: answer {answer!r} is not one of the {count} option letters")
    return index


def take(docs: list[Doc], limit: int | None) -> list[Doc]:
    return docs if limit is None else docs[:limit]
