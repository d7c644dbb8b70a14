"""Bar chart of the scores: tasks on the x axis, one bar per model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from puyu.eval.evaluators import TaskResult
from puyu.io import atomic_path


def plot_scores(results: Sequence[TaskResult], path: str | Path) -> Path | None:
    """Write a grouped bar chart PNG of the percentage scores (perplexity tasks left out); None if none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in results if r.metric != "perplexity"]
    if not scored:
        return None
    models = list(dict.fromkeys(r.model for r in scored))
    tasks = list(dict.fromkeys(r.task for r in scored))
    by = {(r.model, r.task): r.score for r in scored}
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(tasks) * max(1, len(models)) ** 0.5), 4.0))
    for i, model in enumerate(models):
        xs = [t + (i - (len(models) - 1) / 2) * width for t in range(len(tasks))]
        bars = ax.bar(xs, [by.get((model, t), 0.0) for t in tasks], width=width, label=model)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    crowded = len(tasks) > 4 or (len(tasks) > 1 and max(map(len, tasks)) > 14)  # long names collide
    ax.set_xticks(range(len(tasks)), tasks, rotation=30 if crowded else 0, ha="right" if crowded else "center")
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    ax.set_title("Evaluation scores")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path
