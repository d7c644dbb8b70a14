"""The quickstart's markdown report: what each stage did, its figures, loss curves and evaluation scores."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from puyu.io import atomic_path, atomic_write_text
from puyu.pipeline.stages import StageRecord

MODEL_COLORS = {"base": "#9a9a9a", "sft": "#3b6ea8", "sft-int8": "#d1603d"}


def _figure(width: float = 7.0, height: float = 3.6) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(figure: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def loss_figure(runs: dict[str, Path], path: Path) -> Path | None:
    """Train (and validation) loss of each run (pretrain, SFT) side by side."""
    from puyu.train.metrics import read_metrics

    series = {}
    for name, run in runs.items():
        try:
            records = read_metrics(run)
        except Exception:  # a run without a metrics log just has no panel
            continue
        train = [(r["step"], r["loss"]) for r in records if r.get("split", "train") == "train" and "loss" in r]
        val = [
            (r["step"], r["loss"]) for r in records if r.get("split") in ("validation", "val", "eval") and "loss" in r
        ]
        if train or val:
            series[name] = (train, val)
    if not series:
        return None
    figure = _figure(4.0 * len(series), 3.4)
    axes = figure.subplots(1, len(series), squeeze=False)[0]
    for axis, (name, (train, val)) in zip(axes, series.items(), strict=True):
        if train:
            axis.plot(*zip(*train, strict=True), color="#3b6ea8", label="train")
        if val:
            axis.plot(*zip(*val, strict=True), "o-", color="#d1603d", label="validation", markersize=3)
        axis.set_title(f"{name} loss")
        axis.set_xlabel("step")
        axis.set_ylabel("loss")
        axis.grid(alpha=0.3)
        axis.legend()
    return _save(figure, path)


def scores_figure(scores: dict[str, dict[str, float]], tool: dict[str, float], path: Path) -> Path | None:
    """Grouped bars: each task (and the calculator check) by model."""
    tasks = sorted({t for s in scores.values() for t in s})
    if tool:
        tasks.append("calculator_calls")
    models = list(scores) or list(tool)
    if not tasks or not models:
        return None
    figure = _figure(max(6.0, 1.6 * len(tasks)), 3.6)
    axis = figure.subplots()
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        values = [scores.get(model, {}).get(t, tool.get(model, 0.0) if t == "calculator_calls" else 0.0) for t in tasks]
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(tasks))]
        bars = axis.bar(xs, values, width, label=model, color=MODEL_COLORS.get(model))
        axis.bar_label(bars, fmt="%.0f", fontsize=7)
    axis.set_xticks(range(len(tasks)), tasks, fontsize=8)
    axis.set_ylim(0, 105)
    axis.set_ylabel("score (0-100)")
    axis.set_title("held-out evaluation")
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def _figures_table(figures: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in figures.items():
        if key == "plots":
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, (dict, list)):
            continue  # nested settings and per-item details live in the stage's folder, not in the report
        lines.append(f"| {key} | {value} |")
    return ["| figure | value |", "| --- | --- |", *lines] if lines else []


# The quickstart's goals: whole run, memory, and what SFT and quantization must reach.
GOAL_SECONDS = 15 * 60
GOAL_PEAK_MB = 4096
GOAL_SFT_GAIN = 30.0
GOAL_INT8_GAP = 2.0
GOAL_TOOL_CALLS = 80.0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def goal_rows(records: dict[str, StageRecord]) -> list[tuple[str, str, bool]]:
    """(goal, measured, met) for each goal the figures of `records` can answer."""
    from puyu.pipeline.evalsets import INSTRUCTION_TASKS

    rows = []
    if records:
        seconds = sum(r.seconds for r in records.values())
        peak = max(r.peak_rss_mb for r in records.values())
        rows += [
            (f"whole run ≤ {GOAL_SECONDS // 60} min", f"{seconds / 60:.1f} min", seconds <= GOAL_SECONDS),
            (f"peak memory ≤ {GOAL_PEAK_MB / 1024:.0f} GB", f"{peak / 1024:.2f} GB", peak <= GOAL_PEAK_MB),
        ]
    evaluation = records.get("eval")
    scores = evaluation.figures.get("scores", {}) if evaluation else {}
    mean = {m: _mean([s[t] for t in INSTRUCTION_TASKS if t in s]) for m, s in scores.items()}
    tasks = " + ".join(INSTRUCTION_TASKS)
    if "base" in mean and "sft" in mean:
        gain = mean["sft"] - mean["base"]
        rows.append(
            (
                f"SFT − base ≥ {GOAL_SFT_GAIN:.0f} points (mean of {tasks})",
                f"{mean['sft']:.1f} − {mean['base']:.1f} = {gain:+.1f}",
                gain >= GOAL_SFT_GAIN,
            )
        )
    if "sft" in mean and "sft-int8" in mean:
        gap = abs(mean["sft-int8"] - mean["sft"])
        rows.append((f"int8 within {GOAL_INT8_GAP:.0f} points of SFT", f"{gap:.1f} points", gap <= GOAL_INT8_GAP))
    tool = (evaluation.figures.get("tool_calls", {}) if evaluation else {}).get("sft")
    if tool:
        accuracy = tool["call_accuracy"]
        rows.append(
            (
                f"correct calculator calls ≥ {GOAL_TOOL_CALLS:.0f}%",
                f"{accuracy:.1f}% ({tool['correct_calls']}/{tool['requests']})",
                accuracy >= GOAL_TOOL_CALLS,
            )
        )
    return rows


# What a missed goal usually means, and what to try.
MISSED = {
    "whole run": "the machine is slower or busier than the 2-core reference; stages are cached, so a rerun resumes",
    "peak memory": "a larger --size or more workers than the default; lower the sizes in the config",
    "SFT − base": "SFT did not lift the held-out answers enough; more SFT steps (sft.max_steps=…) usually help",
    "int8 within": "quantization moved the scores; try `puyu quantize … --method int8 --awq --calib FILE`",
    "correct calculator calls": "the SFT model's tool calls are often malformed; more SFT on the tool rows helps",
}
# A `--size tiny` run checks that the chain works end to end; its models are too small to learn the skills.
TINY_ONLY_GOALS = ("whole run", "peak memory")


def models_and_next_steps(root: Path) -> list[str]:
    """The model folders by readable name and the commands to try them, with the settings the evaluation used."""
    from puyu.pipeline.quickstart import MODEL_LINKS

    what = {"base-model": "pretrained base", "model": "SFT (merged LoRA), the chat model", "int8-model": "SFT, int8"}
    rows = [f"| `{root / name}` | {what[name]} |" for name in MODEL_LINKS if (root / name).exists()]
    if not rows:
        return []
    model = root / "model"
    lines = ["## Models", "", "| folder | model |", "| --- | --- |", *rows, ""]
    lines += [
        "## Next commands",
        "",
        "The evaluation decodes greedily (`--temperature 0`); the same settings in chat give the answers it scored:",
        "",
        "```bash",
        f".venv/bin/puyu chat {model} --temperature 0",
        f".venv/bin/puyu generate {model} --chat --temperature 0 --prompt 'What is 17 plus 25?'",
        f".venv/bin/puyu serve {model} --port 8000   # OpenAI-compatible; tools work through `tools` in requests",
        f".venv/bin/puyu model info {root / 'int8-model'}",
        "```",
        "",
    ]
    return lines


def write_report(root: Path, records: dict[str, StageRecord], out_dir: Path, size: str = "default") -> Path:
    """Write `root/report.md` (and its PNGs beside it, in `out_dir`); returns the report's path.

    Args:
        root: the run's folder.
        records: the finished stages.
        out_dir: where the charts go.
        size: the run's size; a "tiny" run is judged on the goals a tiny model can meet (time, memory).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# puyu quickstart report", ""]
    lines += models_and_next_steps(root)
    runs = {name: records[name].output("run") for name in ("pretrain", "sft") if name in records}
    if "pretrain" in records and "skills_run" in records["pretrain"].outputs:
        runs = {"pretrain, skills first": records["pretrain"].output("skills_run"), **runs}
    loss_png = loss_figure(runs, out_dir / "loss.png")
    evaluation = records.get("eval")
    scores = evaluation.figures.get("scores", {}) if evaluation else {}
    tool = {
        m: s.get("call_accuracy", 0.0)
        for m, s in (evaluation.figures.get("tool_calls", {}) if evaluation else {}).items()
    }
    scores_png = scores_figure(scores, tool, out_dir / "scores.png")
    total = sum(r.seconds for r in records.values())
    lines += [
        "| stage | seconds | peak RSS (MB) | folder |",
        "| --- | ---: | ---: | --- |",
        *[
            f"| {r.name} | {r.seconds:.1f} | {r.peak_rss_mb:.0f} | `{os.path.relpath(r.dir, root)}` |"
            for r in records.values()
        ],
        f"| total | {total:.1f} | | |",
        "",
        "Seconds are those of the run that built each stage; a cached stage keeps its original time.",
        "",
    ]
    goals = goal_rows(records)
    if goals:
        lines += ["## Goals", "", "| goal | measured | met |", "| --- | --- | --- |"]
        for goal, measured, met in goals:
            verdict = "yes" if met else "no"
            if size == "tiny" and not goal.startswith(TINY_ONLY_GOALS):
                verdict = f"{verdict} (not expected at --size tiny)"
            lines.append(f"| {goal} | {measured} | {verdict} |")
        lines += ["", "Time and memory cover the stages built by this run's folder, whichever run built them.", ""]
        missed = [goal for goal, _, met in goals if not met and (size != "tiny" or goal.startswith(TINY_ONLY_GOALS))]
        for goal in missed:
            reason = next((text for start, text in MISSED.items() if goal.startswith(start)), None)
            if reason:
                lines.append(f"- missed *{goal}*: {reason}.")
        if missed:
            lines.append("")
    if scores:
        tasks = sorted({t for s in scores.values() for t in s})
        lines += [
            "## Evaluation",
            "",
            "| model | " + " | ".join(tasks) + " | calculator calls |",
            "| --- |" + " ---: |" * (len(tasks) + 1),
        ]
        for model, per_task in scores.items():
            cells = [f"{per_task[t]:.1f}" if t in per_task else "" for t in tasks]
            lines.append(f"| {model} | " + " | ".join(cells) + f" | {tool.get(model, float('nan')):.1f} |")
        lines.append("")
    if scores_png:
        lines += [f"![scores]({os.path.relpath(scores_png, root)})", ""]
    if loss_png:
        lines += ["## Training", "", f"![loss]({os.path.relpath(loss_png, root)})", ""]
    lines += ["## Stages", ""]
    for record in records.values():
        lines += [f"### {record.name}", "", *_figures_table(record.figures), ""]
    path = root / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
