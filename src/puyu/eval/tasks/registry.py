"""Task names → loaders over a data folder.

Names: mmlu, cmmlu, ceval (all subjects) or mmlu_<subject> (one subject; likewise cmmlu_/ceval_), gsm8k,
arc_challenge, arc_easy, hellaswag, and paths to YAML task files. Each benchmark's files are looked up in
DATA_DIR/<benchmark>/ (mmlu, cmmlu, ceval, gsm8k, arc, hellaswag), or in DATA_DIR itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from puyu.errors import PuyuError
from puyu.eval.tasks.arc import load_arc
from puyu.eval.tasks.base import Task, TaskFormatError
from puyu.eval.tasks.ceval import load_ceval
from puyu.eval.tasks.cmmlu import load_cmmlu
from puyu.eval.tasks.custom import load_custom
from puyu.eval.tasks.gsm8k import load_gsm8k
from puyu.eval.tasks.hellaswag import load_hellaswag
from puyu.eval.tasks.mmlu import load_mmlu


@dataclass(frozen=True)
class Builtin:
    folder: str
    default_shots: int
    load: Callable[..., Task]
    subjects: bool = False


BUILTIN: dict[str, Builtin] = {
    "mmlu": Builtin("mmlu", 5, load_mmlu, subjects=True),
    "cmmlu": Builtin("cmmlu", 5, load_cmmlu, subjects=True),
    "ceval": Builtin("ceval", 5, load_ceval, subjects=True),
    "gsm8k": Builtin("gsm8k", 5, load_gsm8k),
    "arc_challenge": Builtin("arc", 0, lambda root, **kw: load_arc(root, "Challenge", **kw)),
    "arc_easy": Builtin("arc", 0, lambda root, **kw: load_arc(root, "Easy", **kw)),
    "hellaswag": Builtin("hellaswag", 0, load_hellaswag),
}


def task_names() -> list[str]:
    return sorted(BUILTIN)


def _resolve(name: str) -> tuple[str, Builtin, list[str] | None]:
    if name in BUILTIN:
        return name, BUILTIN[name], None
    for base, builtin in BUILTIN.items():
        if builtin.subjects and name.startswith(base + "_"):
            return base, builtin, [name[len(base) + 1 :]]
    raise PuyuError(
        f"unknown task {name!r}: use one of {', '.join(task_names())}, <benchmark>_<subject>, "
        "or a path to a YAML task file"
    )


def load_task(name: str, *, data_dir: str | Path | None, shots: int | None = None, limit: int | None = None) -> Task:
    """Load a task by name (or YAML path); raises PuyuError (naming the expected layout) when files are wrong."""
    if name.endswith((".yaml", ".yml")):
        return load_custom(name, shots=shots, limit=limit)
    _, builtin, subjects = _resolve(name)
    if data_dir is None:
        raise PuyuError(f"task {name}: --data-dir is required (benchmarks are read from local files only)")
    root = Path(data_dir)
    kwargs: dict = {"shots": builtin.default_shots if shots is None else shots, "limit": limit}
    if subjects is not None:
        kwargs["subjects"] = subjects
    if (root / builtin.folder).is_dir():
        task = builtin.load(root / builtin.folder, **kwargs)
    else:
        try:
            task = builtin.load(root, **kwargs)
        except TaskFormatError as exc:
            raise TaskFormatError(
                f"task {name}: no {root / builtin.folder}/ folder, and {root} itself: {exc}"
            ) from None
    task.name = name
    return task
