"""CMMLU: CSVs with a header `,Question,A,B,C,D,Answer` in `dev/<subject>.csv` and `test/<subject>.csv`.
Prompt as lm-evaluation-harness's `cmmlu` task (few-shot: the first dev rows)."""

from __future__ import annotations

from pathlib import Path

from puyu.eval.tasks.base import Doc, Task, TaskFormatError
from puyu.eval.tasks.mmlu import chinese_exam_docs, exam_task, with_shots
from puyu.eval.tasks.subject_names import CMMLU_NAMES

LAYOUT = "CMMLU layout: {dev,test}/<subject>.csv with header ,Question,A,B,C,D,Answer"
COLUMNS = ["Question", "A", "B", "C", "D", "Answer"]


def _docs(path: Path, subject: str) -> list[Doc]:
    return chinese_exam_docs(
        path, subject, columns=COLUMNS, question="Question", answer="Answer", layout=LAYOUT, id_column=None
    )


def _description(subject: str) -> str:
    name = CMMLU_NAMES.get(subject, subject.replace("_", " "))
    return f"以下是关于{name}的单项选择题，请直接给出正确答案的选项。\n\n"


def load_cmmlu(root: Path, *, subjects: list[str] | None = None, shots: int = 5, limit: int | None = None) -> Task:
    """CMMLU test split over `subjects` (default all); `limit` samples per subject."""
    if not (root / "test").is_dir():
        raise TaskFormatError(f"{root}: no test/ folder (expected {LAYOUT})")
    chosen = subjects or sorted(path.stem for path in (root / "test").glob("*.csv"))
    if not chosen:
        raise TaskFormatError(f"{root / 'test'}: no <subject>.csv files (expected {LAYOUT})")
    docs = with_shots(
        chosen,
        lambda subject, part: _docs(root / part / f"{subject}.csv", subject),
        split="test",
        shots=shots,
        limit=limit,
        description=_description,
    )
    return exam_task("cmmlu", docs, acc_norm=True)
