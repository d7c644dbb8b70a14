"""MMLU from the original release: headerless CSVs `{dev,val,test}/<subject>_<split>.csv` with the columns
question,A,B,C,D,answer. Prompt as lm-evaluation-harness's default `mmlu` task (few-shot: the first dev rows)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from puyu.eval.tasks.base import Doc, Task, TaskFormatError, letter_index, read_csv_dicts, read_csv_rows, take
from puyu.eval.tasks.subject_names import MMLU_CATEGORIES

LAYOUT = "MMLU layout: {dev,val,test}/<subject>_<split>.csv, headerless rows question,A,B,C,D,answer"
LETTERS = ["A", "B", "C", "D"]


def exam_query(question: str, options: list[str], answer_cue: str) -> str:
    """'{question}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\n{answer_cue}' as lm-eval's MMLU/CMMLU/C-Eval templates."""
    lines = [question.strip()] + [f"{letter}. {option}" for letter, option in zip(LETTERS, options, strict=True)]
    return "\n".join(lines) + "\n" + answer_cue


def exam_task(
    name: str, docs: list[Doc], *, acc_norm: bool = False, subject_groups: dict[str, str] | None = None
) -> Task:
    """A four-choice exam task (MMLU, C-Eval, CMMLU): scored by option log-likelihood, or by the letter a
    generating model answers."""
    return Task(
        name=name,
        kind="multiple_choice",
        docs=docs,
        dimension="examination",
        acc_norm=acc_norm,
        extractor="choice",
        max_tokens=8,
        subject_groups=subject_groups or {},
    )


def with_shots(
    subjects: list[str],
    read: Callable[[str, str], list[Doc]],
    *,
    split: str,
    shots: int,
    limit: int | None,
    description: Callable[[str], str],
) -> list[Doc]:
    """The `split` docs of each subject (`limit` per subject), each given the subject's description and its first
    `shots` dev docs as answered examples; `read(subject, split)` reads one subject's docs of one split."""
    docs: list[Doc] = []
    for subject in subjects:
        examples = read(subject, "dev")[:shots] if shots else []
        pairs = [(ex.query, LETTERS[int(ex.gold)]) for ex in examples]  # type: ignore[arg-type]
        text = description(subject)
        for doc in take(read(subject, split), limit):
            doc.shots, doc.description = pairs, text
            docs.append(doc)
    return docs


def chinese_exam_docs(
    path: Path, subject: str, *, columns: list[str], question: str, answer: str, layout: str, id_column: str | None
) -> list[Doc]:
    """Docs of a Chinese exam CSV with a header (C-Eval, CMMLU): the `question`, A-D and `answer` columns; a doc's
    id is `<subject>/<id_column's value>`, or the row number without an id column."""
    docs = []
    for number, row in enumerate(read_csv_dicts(path, required=columns, layout=layout)):
        gold = letter_index(row[answer], 4, f"{path}:{number + 2}")
        query = exam_query(row[question], [row[letter] for letter in LETTERS], "答案：")
        key = row[id_column] if id_column else number
        docs.append(Doc(id=f"{subject}/{key}", query=query, choices=list(LETTERS), gold=gold, subject=subject))
    return docs


def mmlu_subjects(root: Path) -> list[str]:
    """Subjects that have a test file, sorted."""
    test = root / "test"
    if not test.is_dir():
        raise TaskFormatError(f"{root}: no test/ folder (expected {LAYOUT})")
    subjects = sorted(path.name.removesuffix("_test.csv") for path in test.glob("*_test.csv"))
    if not subjects:
        raise TaskFormatError(f"{test}: no <subject>_test.csv files (expected {LAYOUT})")
    return subjects


def _docs(path: Path, subject: str) -> list[Doc]:
    docs = []
    for number, row in enumerate(read_csv_rows(path, header=False, columns=6, layout=LAYOUT)):
        question, options, answer = row[0], row[1:5], row[5]
        gold = letter_index(answer, 4, f"{path}:{number + 1}")
        docs.append(
            Doc(
                id=f"{subject}/{number}",
                query=exam_query(question, options, "Answer:"),
                choices=list(LETTERS),
                gold=gold,
                subject=subject,
            )
        )
    return docs


def load_mmlu(
    root: Path, *, subjects: list[str] | None = None, shots: int = 5, limit: int | None = None, split: str = "test"
) -> Task:
    """MMLU over `subjects` (default all); `limit` samples per subject, `shots` first dev rows as examples."""
    root = root / "data" if (root / "data" / "test").is_dir() else root
    chosen = subjects or mmlu_subjects(root)
    docs = with_shots(
        chosen,
        lambda subject, part: _docs(root / part / f"{subject}_{part}.csv", subject),
        split=split,
        shots=shots,
        limit=limit,
        description=lambda subject: (
            f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        ),
    )
    groups = {subject: MMLU_CATEGORIES[subject] for subject in chosen if subject in MMLU_CATEGORIES}
    return exam_task("mmlu", docs, subject_groups=groups)
