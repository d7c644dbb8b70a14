"""C-Eval: CSVs with a header `id,question,A,B,C,D,answer[,explanation]` in `{dev,val,test}/<subject>_<split>.csv`.
The public test split has no answers, so the val split is scored (as lm-eval's `ceval-valid`); shots from dev."""

from __future__ import annotations

from pathlib import Path

from puyu.eval.tasks.base import Doc, Task, TaskFormatError
from puyu.eval.tasks.mmlu import chinese_exam_docs, exam_task, with_shots
from puyu.eval.tasks.subject_names import CEVAL_NAMES

LAYOUT = "C-Eval layout: {dev,val,test}/<subject>_<split>.csv with header id,question,A,B,C,D,answer"
COLUMNS = ["id", "question", "A", "B", "C", "D", "answer"]


def _docs(path: Path, subject: str) -> list[Doc]:
    return chinese_exam_docs(
        path, subject, columns=COLUMNS, question="question", answer="answer", layout=LAYOUT, id_column="id"
    )


def _description(subject: str) -> str:
    name = CEVAL_NAMES.get(subject, subject.replace("_", " "))
    return f"以下是中国关于{name}的单项选择题，请选出其中的正确答案。\n\n"


def load_ceval(
    root: Path, *, subjects: list[str] | None = None, shots: int = 5, limit: int | None = None, split: str = "val"
) -> Task:
    """C-Eval `split` over `subjects` (default all); `limit` samples per subject."""
    if not (root / split).is_dir():
        raise TaskFormatError(f"{root}: no {split}/ folder (expected {LAYOUT})")
    chosen = subjects or sorted(
        path.name.removesuffix(f"_{split}.csv") for path in (root / split).glob(f"*_{split}.csv")
    )
    if not chosen:
        raise TaskFormatError(f"{root / split}: no <subject>_{split}.csv files (expected {LAYOUT})")
    docs = with_shots(
        chosen,
        lambda subject, part: _docs(root / part / f"{subject}_{part}.csv", subject),
        split=split,
        shots=shots,
        limit=limit,
        description=_description,
    )
    return exam_task("ceval", docs, acc_norm=True)
