"""PNG plots of a run's `metrics.jsonl`: loss (with perplexity), learning rate, and throughput.

Reads the records the training loop logs: split "train" with `loss`, `lr`, `tokens_per_sec` and `mfu`;
split "validation" (or "val", "eval") with `loss`. A missing metric just leaves its plot out.
Figures are drawn with matplotlib's object API (no pyplot, so no global backend or figure state).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from puyu.io import atomic_path
from puyu.train.metrics import read_metrics

VALIDATION_SPLITS = ("validation", "val", "eval")
TRAIN_COLOR, VALIDATION_COLOR, SECOND_COLOR = "#3b6ea8", "#d1603d", "#5a9e4b"


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """Draw the plots of a run that it has the metrics for.

    Args:
        run_dir: the run folder (holding `metrics.jsonl`).
        out: folder for the PNGs; default `run_dir/plots`.

    Returns:
        The files written, from `loss.png`, `lr.png` and `throughput.png` (none for an empty log).
    """
    records = read_metrics(run_dir)  # PuyuError when there is no log at all
    folder = Path(out) if out is not None else Path(run_dir) / "plots"
    train = [r for r in records if r.get("split", "train") == "train"]
    validation = [r for r in records if r.get("split") in VALIDATION_SPLITS]
    title = Path(run_dir).resolve().name
    written = []
    train_loss, validation_loss = _series(train, "loss"), _series(validation, "loss")
    if len(train_loss[0]) or len(validation_loss[0]):
        written.append(_save(_loss_figure(train_loss, validation_loss, title), folder / "loss.png"))
    lr = _series(train, "lr")
    if len(lr[0]):
        written.append(_save(_lr_figure(lr, title), folder / "lr.png"))
    speed = _series(train, "tokens_per_sec")
    if len(speed[0]):
        written.append(_save(_throughput_figure(speed, _series(train, "mfu"), title), folder / "throughput.png"))
    return written


def _series(records: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the records that hold a number under `key`; infinities become NaN (gaps)."""
    points = [
        (r["step"], float(r[key]))
        for r in records
        if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
    ]
    steps = np.array([p[0] for p in points], dtype=float)
    values = np.array([p[1] for p in points], dtype=float)
    values[~np.isfinite(values)] = np.nan
    return steps, values


def smooth(values: np.ndarray, weight: float | None = None) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing); NaNs are skipped, not spread.

    Args:
        values: the series.
        weight: the EMA's memory in [0, 1); default from the length, about 1 - 100/len (no smoothing up to
            100 points, a ~len/100-point memory beyond).
    """
    if weight is None:
        weight = min(0.99, max(0.0, 1.0 - 100.0 / max(len(values), 1)))
    out = np.full(len(values), np.nan)
    average, norm = 0.0, 0.0
    for i, value in enumerate(values):
        if math.isnan(value):
            continue
        average = weight * average + (1.0 - weight) * value
        norm = weight * norm + (1.0 - weight)
        out[i] = average / norm
    return out


def _figure(title: str, ylabel: str) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=110)
    axis = figure.add_subplot()
    axis.set_title(title)
    axis.set_xlabel("step")
    axis.set_ylabel(ylabel)
    axis.grid(True, alpha=0.3)
    return figure, axis


def _few(steps: np.ndarray) -> dict[str, Any]:
    """A line through fewer than two points draws nothing: mark each point instead."""
    return {"marker": "o", "markersize": 6} if len(steps) < 2 else {}


def count_train_points(run_dir: str | Path) -> int:
    """How many steps of a run logged a training loss."""
    records = read_metrics(run_dir)
    return len(_series([r for r in records if r.get("split", "train") == "train"], "loss")[0])


def _loss_figure(train: tuple[np.ndarray, np.ndarray], validation: tuple[np.ndarray, np.ndarray], title: str) -> Any:
    figure, axis = _figure(f"{title}: loss", "loss (nats per token)")
    steps, loss = train
    if len(steps):
        axis.plot(steps, loss, color=TRAIN_COLOR, alpha=0.25, linewidth=0.8)
        axis.plot(steps, smooth(loss), color=TRAIN_COLOR, linewidth=1.6, label="train (smoothed)", **_few(steps))
    steps, loss = validation
    if len(steps):
        axis.plot(steps, loss, "o-", color=VALIDATION_COLOR, markersize=4, linewidth=1.2, label="validation")
    axis.legend(loc="upper right")
    _perplexity_axis(axis)
    return figure


def _perplexity_axis(axis: Any) -> None:
    """Perplexity, exp(loss), as a second scale of the same curve on the right."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

    ppl = axis.secondary_yaxis(
        "right", functions=(lambda x: np.exp(np.minimum(x, 50.0)), lambda p: np.log(np.maximum(p, 1e-12)))
    )
    low, high = axis.get_ylim()
    # Linear loss ticks are logarithmic perplexity ticks: 1-2-5 decades over a wide range, plain steps
    # when the curve spans less than a factor of ten.
    wide = high - low > math.log(10.0)
    ppl.yaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)) if wide else MaxNLocator(6))
    ppl.yaxis.set_minor_locator(NullLocator())
    ppl.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 100 else f"{value:.3g}"))
    ppl.set_ylabel("perplexity")


def _lr_figure(lr: tuple[np.ndarray, np.ndarray], title: str) -> Any:
    figure, axis = _figure(f"{title}: learning rate", "learning rate")
    axis.plot(*lr, color=TRAIN_COLOR, linewidth=1.4, **_few(lr[0]))
    axis.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    axis.set_ylim(bottom=0)
    return figure


def _throughput_figure(speed: tuple[np.ndarray, np.ndarray], mfu: tuple[np.ndarray, np.ndarray], title: str) -> Any:
    figure, axis = _figure(f"{title}: throughput", "tokens/s")
    steps, values = speed
    axis.plot(steps, values, color=TRAIN_COLOR, alpha=0.25, linewidth=0.8)
    axis.plot(steps, smooth(values), color=TRAIN_COLOR, linewidth=1.4, label="tokens/s (smoothed)", **_few(steps))
    axis.set_ylim(bottom=0)
    steps, values = mfu
    if len(steps) and np.nanmax(np.nan_to_num(values)) > 0:
        right = axis.twinx()
        right.plot(steps, 100.0 * smooth(values), color=SECOND_COLOR, linewidth=1.2, label="MFU (smoothed)")
        right.set_ylabel("MFU (%)")
        right.set_ylim(bottom=0)
        lines = [line for line in axis.get_lines() + right.get_lines() if not line.get_label().startswith("_")]
        axis.legend(lines, [line.get_label() for line in lines], loc="lower right")
    return figure


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path
