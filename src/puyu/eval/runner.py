"""Models × tasks: load each task once, run it on each model (cached, resumable), save per-sample outputs.

Layout of the output folder:
    cache.sqlite                           model outputs by request (a rerun skips what is there)
    <model>/<task>/predictions.jsonl       one record per sample: prompt, options/output, prediction, correct
    <model>/<task>/result.json             the task's scores
    summary.md, summary.csv, summary.json, scores.png
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from puyu.errors import PuyuError
from puyu.eval.cache import PredictionCache
from puyu.eval.evaluators import TaskResult, evaluate_task
from puyu.eval.models import EvalModel, load_client
from puyu.eval.tasks import Task, load_task
from puyu.io import atomic_write_text


@dataclass
class ModelSpec:
    """A model to evaluate: a folder or an http(s) endpoint, with its options."""

    path: str
    name: str | None = None
    chat: bool | None = None
    api_key: str | None = None
    model: str | None = None
    batch_size: int = 16
    concurrency: int = 8
    device: str = "auto"

    def load(self) -> EvalModel:
        model = load_client(
            self.path,
            api_key=self.api_key,
            model=self.model,
            concurrency=self.concurrency,
            chat=self.chat,
            batch_size=self.batch_size,
            device=self.device,
        )
        if self.name:
            model.name = self.name
        return model


@dataclass
class RunOutcome:
    results: list[TaskResult] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)


def safe_name(name: str) -> str:
    """A file-system-safe form of a model or task name."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "model"


def save_task_outputs(out_dir: Path, result: TaskResult) -> None:
    """predictions.jsonl and result.json under out_dir/<model>/<task>/."""
    folder = out_dir / safe_name(result.model) / safe_name(result.task)
    lines = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in result.records)
    atomic_write_text(folder / "predictions.jsonl", lines)
    summary = json.dumps(result.summary(), indent=2, ensure_ascii=False, default=str)
    atomic_write_text(folder / "result.json", summary + "\n")


def _worker(spec: ModelSpec, task: Task, cache_path: str, chat: bool | None, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    model = spec.load()
    cache = PredictionCache(cache_path)
    try:
        evaluate_task(model, task, cache, chat=chat, progress=False)
    finally:
        cache.close()


def _run_sharded(spec: ModelSpec, task: Task, cache_path: Path, chat: bool | None, workers: int) -> None:
    """Fill the cache for `task` with `workers` processes, each loading the model and taking every n-th sample."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    shards = []
    for index in range(workers):
        part = Task(**{**task.__dict__, "docs": task.docs[index::workers]})
        shards.append(context.Process(target=_worker, args=(spec, part, str(cache_path), chat, threads)))
    for process in shards:
        process.start()
    for process in shards:
        process.join()
    failed = [p.exitcode for p in shards if p.exitcode]
    if failed:
        raise PuyuError(f"{task.name}: {len(failed)} of {workers} worker processes failed (exit codes {failed})")


def run(
    models: Sequence[ModelSpec],
    tasks: Sequence[str],
    *,
    data_dir: str | None,
    out_dir: str | Path,
    shots: int | None = None,
    limit: int | None = None,
    chat: bool | None = None,
    workers: int = 1,
    progress: bool = True,
) -> RunOutcome:
    """Evaluate every model on every task; a task that fails to load or run is reported and the rest go on."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outcome = RunOutcome()
    loaded: list[Task] = []
    for name in tasks:
        try:
            loaded.append(load_task(name, data_dir=data_dir, shots=shots, limit=limit))
        except PuyuError as exc:
            outcome.failures[name] = str(exc)
            print(f"puyu eval: skipping task {name}: {exc}", file=sys.stderr)
    cache_path = out / "cache.sqlite"
    cache = PredictionCache(cache_path)
    seen: dict[str, int] = {}
    try:
        for spec in models:
            try:
                model = spec.load()
            except PuyuError as exc:
                outcome.failures[spec.name or spec.path] = str(exc)
                print(f"puyu eval: skipping model {spec.name or spec.path}: {exc}", file=sys.stderr)
                continue
            count = seen[model.name] = seen.get(model.name, 0) + 1
            if count > 1:
                model.name = f"{model.name}-{count}"
            local = not spec.path.startswith(("http://", "https://"))
            for task in loaded:
                try:
                    if local and workers > 1 and len(task.docs) >= workers:
                        _run_sharded(spec, task, cache_path, chat, workers)
                    result = evaluate_task(model, task, cache, chat=chat, progress=progress)
                except PuyuError as exc:
                    outcome.failures[f"{model.name} · {task.name}"] = str(exc)
                    print(f"puyu eval: {model.name} · {task.name} failed: {exc}", file=sys.stderr)
                    continue
                save_task_outputs(out, result)
                outcome.results.append(result)
            del model
    finally:
        cache.close()
    return outcome


def config_snapshot(**values: Any) -> dict[str, Any]:
    """The run's settings as written into summary.json (reproducibility)."""
    import platform

    import puyu

    snapshot = {k: v for k, v in values.items()}
    snapshot["puyu_version"] = getattr(puyu, "__version__", "unknown")
    snapshot["python"] = platform.python_version()
    return snapshot
