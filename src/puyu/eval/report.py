"""Summary tables of an evaluation: markdown, CSV and JSON, grouped by dimension, models side by side."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from puyu.eval.evaluators import TaskResult
from puyu.eval.tasks.base import DIMENSIONS
from puyu.io import atomic_write_text


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2f}"


def dimension_scores(results: Sequence[TaskResult]) -> dict[str, dict[str, float]]:
    """model → dimension → mean score of its tasks (perplexity tasks left out: lower is better there)."""
    table: dict[str, dict[str, list[float]]] = {}
    for r in results:
        if r.metric != "perplexity":
            table.setdefault(r.model, {}).setdefault(r.dimension, []).append(r.score)
    return {m: {d: sum(v) / len(v) for d, v in dims.items()} for m, dims in table.items()}


def _models_tasks(results: Sequence[TaskResult]) -> tuple[list[str], list[TaskResult]]:
    models = list(dict.fromkeys(r.model for r in results))
    order = {d: i for i, d in enumerate(DIMENSIONS)}
    firsts = list({r.task: r for r in results}.values())
    firsts.sort(key=lambda r: order.get(r.dimension, len(order)))
    return models, firsts


def markdown(results: Sequence[TaskResult], failures: dict[str, str] | None = None) -> str:
    """A markdown report: scores by dimension and task, dimension means, per-subject detail, failures."""
    if not results:
        problems = [f"- {name}: {message}" for name, message in (failures or {}).items()]
        return "\n".join(["# Evaluation", "", "No task was scored.", "", *problems]) + "\n"
    models, tasks = _models_tasks(results)
    by = {(r.model, r.task): r for r in results}
    lines = ["# Evaluation", "", "| dimension | task | metric | n | " + " | ".join(models) + " |"]
    lines.append("|" + "---|" * (4 + len(models)))
    for t in tasks:
        cells = [_fmt(by[(m, t.task)].score) if (m, t.task) in by else "-" for m in models]
        metric = "acc" if t.mode.endswith("loglikelihood") else t.metric
        lines.append(f"| {t.dimension} | {t.task} | {metric} | {t.n} | " + " | ".join(cells) + " |")
    dims = dimension_scores(results)
    lines += ["", "## By dimension", "", "| dimension | " + " | ".join(models) + " |", "|" + "---|" * (1 + len(models))]
    for d in DIMENSIONS:
        if any(d in dims.get(m, {}) for m in models):
            lines.append(f"| {d} | " + " | ".join(_fmt(dims.get(m, {}).get(d)) for m in models) + " |")
    extra = [
        t for t in tasks if any(by[(m, t.task)].metrics.keys() - {"acc", t.metric} for m in models if (m, t.task) in by)
    ]
    if extra:
        lines += ["", "## Other metrics", ""]
        for t in extra:
            for m in models:
                if (m, t.task) in by:
                    metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in by[(m, t.task)].metrics.items())
                    lines.append(f"- {t.task} · {m}: {metrics}")
    for t in tasks:
        subjects = list(dict.fromkeys(s for m in models if (m, t.task) in by for s in by[(m, t.task)].subjects))
        if len(subjects) < 2:
            continue
        lines += ["", f"## {t.task} by subject", "", "| subject | n | " + " | ".join(models) + " |"]
        lines.append("|" + "---|" * (2 + len(models)))
        for s in subjects:
            row = [by[(m, t.task)].subjects.get(s) if (m, t.task) in by else None for m in models]
            n = next((int(c["n"]) for c in row if c), 0)
            lines.append(f"| {s} | {n} | " + " | ".join(_fmt(c["score"]) if c else "-" for c in row) + " |")
    errors = [(r.model, r.task, r.errors) for r in results if r.errors]
    if errors or failures:
        lines += ["", "## Problems", ""]
        lines += [f"- {m} · {t}: {e} samples not scored (prompt too long or request failed)" for m, t, e in errors]
        lines += [f"- {name}: {message}" for name, message in (failures or {}).items()]
    return "\n".join(lines) + "\n"


def csv_text(results: Sequence[TaskResult]) -> str:
    """Long format: one row per model, task and subject ('' for the task as a whole)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "dimension", "task", "subject", "metric", "score", "n", "errors"])
    for r in results:
        writer.writerow([r.model, r.dimension, r.task, "", r.metric, f"{r.score:.4f}", r.n, r.errors])
        for subject, cell in r.subjects.items():
            writer.writerow(
                [r.model, r.dimension, r.task, subject, r.metric, f"{cell['score']:.4f}", int(cell["n"]), ""]
            )
    return buffer.getvalue()


def summary_dict(results: Sequence[TaskResult], failures: dict[str, str], config: dict[str, Any]) -> dict[str, Any]:
    scores: dict[str, dict[str, float]] = {}
    for r in results:
        scores.setdefault(r.model, {})[r.task] = r.score
    return {
        "scores": scores,
        "dimensions": dimension_scores(results),
        "results": [r.summary() for r in results],
        "failures": failures,
        "config": config,
    }


def write_report(
    out_dir: str | Path, results: Sequence[TaskResult], failures: dict[str, str], config: dict[str, Any]
) -> list[Path]:
    """summary.md, summary.csv, summary.json and scores.png in `out_dir`; returns the paths written."""
    from puyu.eval.plots import plot_scores

    out = Path(out_dir)
    paths = [out / "summary.md", out / "summary.csv", out / "summary.json"]
    atomic_write_text(paths[0], markdown(results, failures))
    atomic_write_text(paths[1], csv_text(results))
    text = json.dumps(summary_dict(results, failures, config), indent=2, ensure_ascii=False, default=str)
    atomic_write_text(paths[2], text + "\n")
    png = plot_scores(results, out / "scores.png")
    return paths + ([png] if png else [])
