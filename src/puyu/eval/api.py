"""The evaluation entry point for code: models × tasks → scores and report files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from puyu.errors import PuyuError
from puyu.eval.evaluators import TaskResult
from puyu.eval.report import write_report
from puyu.eval.runner import ModelSpec, config_snapshot, run


@dataclass
class EvalReport:
    """What an evaluation produced.

    Args:
        scores: model name → task name → score (percent; perplexity for perplexity tasks).
        results: the per-task results (per-sample records included).
        failures: task (or "model · task") → why it was not scored.
        files: the report files written.
    """

    scores: dict[str, dict[str, float]]
    results: list[TaskResult] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    out_dir: Path | None = None


def _spec(entry: str | ModelSpec | dict[str, Any], defaults: dict[str, Any]) -> ModelSpec:
    if isinstance(entry, ModelSpec):
        return entry
    if isinstance(entry, str):
        return ModelSpec(path=entry, **defaults)
    if not isinstance(entry, dict) or "path" not in entry:
        raise PuyuError(f"a model entry is a path/URL or a mapping with 'path', got {entry!r}")
    known = set(ModelSpec.__dataclass_fields__)
    unknown = sorted(set(entry) - known)
    if unknown:
        raise PuyuError(
            f"model entry {entry['path']}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    return ModelSpec(**{**defaults, **entry})


def run_evaluation(
    models: list[str | ModelSpec | dict[str, Any]],
    tasks: list[str],
    *,
    data_dir: str | None,
    out_dir: str,
    shots: int | None = None,
    limit: int | None = None,
    task_files: list[str] | None = None,
    chat: bool | None = None,
    batch_size: int = 16,
    workers: int = 1,
    api_key: str | None = None,
    api_model: str | None = None,
    progress: bool = True,
) -> EvalReport:
    """Evaluate `models` (folders or http(s) endpoints) on `tasks` (+ YAML `task_files`) and write the report.

    Results are cached in `out_dir`: running again with the same settings reuses every finished sample.
    """
    names = list(tasks) + list(task_files or [])
    if not models:
        raise PuyuError("no model to evaluate: give --model DIR or --api URL")
    if not names:
        raise PuyuError("no task to run: give --tasks (e.g. mmlu,gsm8k) or --task-file")
    defaults: dict[str, Any] = {
        "batch_size": batch_size,
        "api_key": api_key,
        "model": api_model,
        "concurrency": workers if workers > 1 else 8,  # endpoints: --workers requests in flight (default 8)
    }
    specs = [_spec(m, defaults) for m in models]
    outcome = run(
        specs,
        names,
        data_dir=data_dir,
        out_dir=out_dir,
        shots=shots,
        limit=limit,
        chat=chat,
        workers=workers,
        progress=progress,
    )
    config = config_snapshot(
        models=[s.path for s in specs],
        tasks=names,
        data_dir=data_dir,
        shots=shots,
        limit=limit,
        chat=chat,
        batch_size=batch_size,
    )
    files = write_report(out_dir, outcome.results, outcome.failures, config)
    scores: dict[str, dict[str, float]] = {}
    for r in outcome.results:
        scores.setdefault(r.model, {})[r.task] = r.score
    return EvalReport(
        scores=scores, results=outcome.results, failures=outcome.failures, files=files, out_dir=Path(out_dir)
    )


RUN_KEYS = {
    "models",
    "tasks",
    "task_files",
    "data_dir",
    "out",
    "out_dir",
    "shots",
    "limit",
    "chat",
    "batch_size",
    "workers",
    "api_key",
    "api_model",
}


def load_run_config(path: str | Path) -> dict[str, Any]:
    """A run file (YAML): models (paths/URLs or mappings), tasks, data_dir, out, shots, limit, chat, …;
    relative paths are taken from the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise PuyuError(f"{path}: run file not found")
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(config, dict):
        raise PuyuError(f"{path}: a run file is a YAML mapping")
    unknown = sorted(set(config) - RUN_KEYS)
    if unknown:
        raise PuyuError(f"{path}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(RUN_KEYS))})")
    base = path.parent

    def local(value: str | None) -> str | None:
        if value is None or value.startswith(("http://", "https://")) or Path(value).is_absolute():
            return value
        return str(base / value)

    models = []
    for entry in config.get("models") or []:
        if isinstance(entry, dict) and "path" in entry:
            entry = {**entry, "path": local(str(entry["path"]))}
        elif isinstance(entry, str):
            entry = local(entry)
        models.append(entry)
    tasks = config.get("tasks") or []
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    tasks = [local(t) if str(t).endswith((".yaml", ".yml")) else t for t in tasks]
    chat = config.get("chat", "auto")
    return {
        "models": models,
        "tasks": tasks,
        "task_files": [local(t) for t in config.get("task_files") or []],
        "data_dir": local(config.get("data_dir")),
        "out_dir": local(config.get("out_dir", config.get("out"))) or str(base / "eval-out"),
        "shots": config.get("shots"),
        "limit": config.get("limit"),
        "chat": {"auto": None, "on": True, "off": False, True: True, False: False}.get(chat),
        "batch_size": int(config.get("batch_size", 16)),
        "workers": int(config.get("workers", 1)),
        "api_key": config.get("api_key"),
        "api_model": config.get("api_model"),
    }
