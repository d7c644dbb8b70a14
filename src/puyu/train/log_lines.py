"""One log line per logged step when progress bars are off, in the form XTuner (mmengine) prints:
`Iter(train) [ 10/100]  lr: 2.0000e-05  eta: 0:01:23  time: 0.5123  loss: 1.2345  grad_norm: 0.8123`."""

from __future__ import annotations

import datetime


def train_log_line(step: int, max_steps: int, seconds_per_step: float, metrics: dict[str, float]) -> str:
    """The line for `step` of `max_steps`.

    Args:
        step: the step just finished.
        max_steps: the run's length.
        seconds_per_step: mean wall time of the steps so far in this process.
        metrics: the step's logged values (loss, lr, grad_norm, tokens_per_sec, ...).
    """
    width = len(str(max_steps))
    eta = datetime.timedelta(seconds=round(seconds_per_step * max(max_steps - step, 0)))
    parts = [f"Iter(train) [{step:>{width}}/{max_steps}]"]
    if "lr" in metrics:
        parts.append(f"lr: {metrics['lr']:.4e}")
    parts += [f"eta: {eta}", f"time: {seconds_per_step:.4f}"]
    shown = (("loss", "loss", ".4f"), ("grad_norm", "grad_norm", ".4f"), ("tokens_per_sec", "tokens/s", ".0f"))
    for key, label, fmt in shown:
        value = metrics.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{label}: {value:{fmt}}")
    return "  ".join(parts)
