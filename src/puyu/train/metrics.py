"""What a run measures about itself: model FLOPs per token, the device's peak, throughput and MFU, and the
metric log (`metrics.jsonl`, optionally TensorBoard) that the plots and reports read back.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any, TextIO

import torch

from puyu.errors import PuyuError
from puyu.model.config import ModelConfig

METRICS_FILE = "metrics.jsonl"
RESERVED_KEYS = ("step", "split", "time")


# ---- FLOPs -------------------------------------------------------------------------------------


def matmul_parameters(config: ModelConfig) -> int:
    """Weights that take part in a matrix multiply for every token: the q/k/v/o and gate/up/down
    projections of each layer and the output projection (counted even when tied to the embedding, since
    the logits are still a matmul). Not counted: the embedding lookup (a gather), norms and biases
    (elementwise, negligible)."""
    d, hd = config.hidden_size, config.head_dim or 0
    attention = d * hd * (config.num_heads + 2 * config.num_kv_heads) + config.num_heads * hd * d
    mlp = 3 * d * config.intermediate_size
    return config.num_layers * (attention + mlp) + config.vocab_size * d


def model_flops_per_token(config: ModelConfig, seq_len: int, *, training: bool = True) -> float:
    """Model FLOPs per token, the MFU numerator (PaLM appendix B; Chinchilla's count up to elementwise ops).

    `6·N + 12·L·H·T` for a forward and backward pass, where N = `matmul_parameters(config)` (2 FLOPs per
    weight per token forward, 4 backward for the input and weight gradients), L = layers, H =
    num_heads·head_dim (the attention width, which GQA does not shrink for the scores) and T = `seq_len`:
    per layer and token, QKᵀ and AV are 2·H·T FLOPs each forward, tripled for the backward.
    Attention is counted over all T keys, as PaLM, Megatron and nanoGPT do, although a causal kernel
    skips about half of them: MFU stays comparable with published numbers but slightly overstates the
    hardware's useful work at long context. Forward only is a third of the total.

    Args:
        config: the model's shape.
        seq_len: tokens per training sequence.
        training: forward and backward (True) or forward only.
    """
    attention_width = config.num_heads * (config.head_dim or 0)
    total = 6.0 * matmul_parameters(config) + 12.0 * config.num_layers * attention_width * seq_len
    return total if training else total / 3.0


def _synchronize(device: torch.device) -> None:
    if device.type != "cpu":
        backend = getattr(torch, device.type, None)
        if backend is not None and hasattr(backend, "synchronize"):
            backend.synchronize(device)


def measure_peak_flops(
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    size: int = 2048,
    seconds: float = 2.0,
) -> float:
    """Best sustained FLOP/s of square matmuls on this device and dtype, the MFU denominator when the
    config names none. On the CPU it reflects the current `torch.get_num_threads()`.

    Timed in batches of matmuls (each about a tenth of `seconds`, so timer and launch overheads vanish);
    the best batch wins, which skips warm-up effects (clock ramp-up, kernel selection).

    Args:
        dtype: a floating dtype, the one training computes in.
        device: where to measure.
        size: matrix side; large enough to be compute-bound (2048 and up on GPUs).
        seconds: time budget (at least two batches run whatever it is).

    Returns:
        FLOP/s (multiply and add counted as 2).
    """
    if not dtype.is_floating_point:
        raise ValueError(f"measure_peak_flops needs a floating dtype, got {dtype}")
    device = torch.device(device)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    out = torch.empty_like(a)
    flops = 2.0 * size**3

    def timed(count: int) -> float:
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(count):
            torch.mm(a, b, out=out)
        _synchronize(device)
        return time.perf_counter() - start

    first = timed(1)  # warm-up, and a first estimate of one matmul's time
    count = max(1, int(seconds / 10 / max(first, 1e-9)))
    best = flops / first if first > 0 else 0.0
    deadline = time.perf_counter() + seconds
    batches = 0
    while batches < 2 or time.perf_counter() < deadline:
        elapsed = timed(count)
        if elapsed > 0:
            best = max(best, flops * count / elapsed)
        batches += 1
    return best


# ---- throughput ----------------------------------------------------------------------------------


class Throughput:
    """Tokens per second and MFU over the last `window` steps (a rolling window, so the first steps'
    compilation and warm-up wash out).

    Args:
        window: steps averaged over.
    """

    def __init__(self, window: int = 20) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self._steps: deque[tuple[float, float]] = deque(maxlen=window)
        self.total_tokens = 0.0
        self.total_seconds = 0.0

    def update(self, tokens: float, seconds: float) -> float:
        """Record one step of `tokens` taking `seconds`; returns the windowed tokens/s."""
        self._steps.append((float(tokens), float(seconds)))
        self.total_tokens += tokens
        self.total_seconds += seconds
        return self.tokens_per_sec

    @property
    def tokens_per_sec(self) -> float:
        """Tokens per second over the window (0 before any timed step)."""
        seconds = sum(s for _, s in self._steps)
        return sum(t for t, _ in self._steps) / seconds if seconds > 0 else 0.0

    def mfu(self, flops_per_token: float, peak_flops: float) -> float:
        """Model FLOPs utilisation: achieved model FLOP/s over `peak_flops`.

        Args:
            flops_per_token: from `model_flops_per_token`.
            peak_flops: the peak of the devices that processed the counted tokens (one device's peak
                times the world size when the tokens are summed over all ranks).
        """
        return self.tokens_per_sec * flops_per_token / peak_flops if peak_flops > 0 else 0.0


# ---- metric log ----------------------------------------------------------------------------------

_tensorboard_warned = False


def _plain(key: str, value: Any) -> float | int | bool | str | None:
    """A metric value as a JSON scalar (tensors and numpy scalars unwrapped)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"metric {key!r} is a tensor of {value.numel()} elements, not a scalar")
        value = value.item()
    elif hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"metric {key!r} has type {type(value).__name__}; expected a number")


class MetricsLogger:
    """Appends one JSON line per `log` call to `run_dir/metrics.jsonl` (and TensorBoard scalars if asked).

    Each line is `{"step", "split", "time", **metrics}` (time: Unix seconds), flushed at once so a killed
    run loses at most the line being written. NaN and infinity are written as Python's `json` writes
    them (`NaN`, `Infinity`): a diverged loss stays visible. Opening a log whose last line was torn by a
    kill drops the fragment first, so appended lines start on a line of their own.

    Args:
        run_dir: the run folder.
        tensorboard: also write TensorBoard event files to `run_dir/tensorboard` (needs the `tensorboard`
            package; without it, one warning and JSON only).
        enabled: False makes every call a no-op (ranks other than 0).
    """

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = False, enabled: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self._file: TextIO | None = None
        self._writer: Any = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_torn_tail(self.path)
        self._file = self.path.open("a", encoding="utf-8")
        if tensorboard:
            self._writer = _tensorboard_writer(self.path.parent / "tensorboard")

    def log(self, step: int, metrics: dict[str, float], split: str = "train") -> None:
        """Append one record.

        Args:
            step: the optimizer step the metrics belong to; within a run steps never go backward (a
                step lower than one already logged marks a resume, see `read_metrics`).
            metrics: name → number (tensors and numpy scalars are unwrapped).
            split: "train", "validation", ...
        """
        if not self.enabled or self._file is None:
            return
        record: dict[str, Any] = {"step": int(step), "split": split, "time": time.time()}
        for key, value in metrics.items():
            if key in RESERVED_KEYS:
                raise ValueError(f"metric name {key!r} is reserved")
            record[key] = _plain(key, value)
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in record.items():
                if key not in RESERVED_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{split}/{key}", value, global_step=int(step))

    def close(self) -> None:
        """Close the files; further `log` calls do nothing."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tensorboard_writer(folder: Path) -> Any:
    global _tensorboard_warned
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch.utils.tensorboard needs the separate `tensorboard` package
        if not _tensorboard_warned:
            warnings.warn("tensorboard is not installed (pip install tensorboard); logging to JSON only", stacklevel=3)
            _tensorboard_warned = True
        return None
    return SummaryWriter(log_dir=str(folder))


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line that has no newline (a write interrupted by a kill)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as file:
        file.seek(-1, os.SEEK_END)
        if file.read(1) == b"\n":
            return
        # Walk back to the last newline in blocks; metric lines are short.
        position = file.seek(0, os.SEEK_END)
        while position > 0:
            start = max(0, position - 65536)
            file.seek(start)
            cut = file.read(position - start).rfind(b"\n")
            if cut >= 0:
                file.truncate(start + cut + 1)
                return
            position = start
        file.truncate(0)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of `run_dir/metrics.jsonl`, as the run's final history.

    A torn last line (a run killed mid-write) is skipped. A resumed run re-logs the steps after its
    checkpoint, so a record whose step is lower than one already read, or whose (step, split) was already
    read, supersedes earlier records: those with a higher step (the abandoned continuation) and the one of
    the same step and split are dropped.

    Args:
        run_dir: the run folder.

    Returns:
        Records in file order, each with "step", "split", "time" and its metrics.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise PuyuError(f"{path}: no metrics log (not a run folder, or the run has not logged yet)")
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    records: list[dict[str, Any]] = []  # always in non-decreasing step order
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = int(record["step"])
        except (ValueError, KeyError, TypeError):
            if number < len(lines):  # a complete line (the torn one is the last piece, after the last newline)
                warnings.warn(f"{path}:{number}: not a metrics record, skipped", stacklevel=2)
            continue
        record["step"] = step
        if records and records[-1]["step"] >= step:
            _supersede(records, step, record.get("split", "train"))
        records.append(record)
    return records


def _supersede(records: list[dict[str, Any]], step: int, split: str) -> None:
    """Drop the records a re-logged (`step`, `split`) replaces: later steps, and the same step and split."""
    start = len(records)
    while start > 0 and records[start - 1]["step"] >= step:
        start -= 1
    records[start:] = [r for r in records[start:] if r["step"] == step and r.get("split", "train") != split]
