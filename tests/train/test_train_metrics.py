"""FLOPs per token, peak FLOP/s, throughput and MFU, and the metric log with torn lines and resumes."""

from __future__ import annotations

import importlib.util
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from puyu.errors import PuyuError
from puyu.model.config import ModelConfig
from puyu.model.init import random_model
from puyu.train import metrics as metrics_module
from puyu.train.metrics import (
    MetricsLogger,
    Throughput,
    matmul_parameters,
    measure_peak_flops,
    model_flops_per_token,
    read_metrics,
)

SMALL = ModelConfig(
    family="llama", vocab_size=512, hidden_size=64, intermediate_size=176, num_layers=2, num_heads=4, num_kv_heads=2
)


def test_flops_formula_by_hand() -> None:
    # Per layer: q 64·64, k and v 64·32 each (2 KV heads of 16), o 64·64, gate/up/down 3·64·176.
    per_layer = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 176
    assert matmul_parameters(SMALL) == 2 * per_layer + 512 * 64  # + output projection; no embedding
    attention = 12 * 2 * (4 * 16) * 32  # 12 · layers · (heads · head_dim) · seq_len
    assert model_flops_per_token(SMALL, 32) == 6 * (2 * per_layer + 512 * 64) + attention == 798_720
    assert model_flops_per_token(SMALL, 32, training=False) == pytest.approx(798_720 / 3)
    # Tying does not remove the logits matmul; an explicit head_dim sets the attention width.
    assert matmul_parameters(SMALL.replace(tie_word_embeddings=True)) == matmul_parameters(SMALL)
    wide = SMALL.replace(head_dim=32)
    assert model_flops_per_token(wide, 10) - 6 * matmul_parameters(wide) == 12 * 2 * (4 * 32) * 10


def measured_flops_per_token(config: ModelConfig, batch: int, seq_len: int, backward: bool) -> float:
    model = random_model(config).train()
    ids = torch.randint(0, config.vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(0))
    # The math SDPA backend runs attention as two batched matmuls the counter sees (the fused CPU kernel
    # has no FLOP formula); it computes all T×T scores, the same full-attention count as the formula.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.set_grad_enabled(backward):
        logits = model(ids)
        if backward:
            torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
    return counter.get_total_flops() / (batch * seq_len)


@pytest.mark.parametrize(
    "config",
    [SMALL, SMALL.replace(family="qwen2", qkv_bias=True, tie_word_embeddings=True, num_kv_heads=1)],
    ids=["llama-gqa", "qwen2-tied-bias"],
)
def test_flops_formula_matches_a_counted_forward_and_backward(config: ModelConfig) -> None:
    # Agreement is exact: every counted FLOP is a matmul of the formula (the counter does not count
    # bias adds, norms, activations, RoPE or the softmax, and neither does the formula), and the
    # embedding's backward is a scatter, not a matmul.
    assert measured_flops_per_token(config, 2, 32, backward=True) == pytest.approx(
        model_flops_per_token(config, 32), rel=1e-9
    )
    assert measured_flops_per_token(config, 1, 48, backward=False) == pytest.approx(
        model_flops_per_token(config, 48, training=False), rel=1e-9
    )


def test_measure_peak_flops_is_quick_and_plausible() -> None:
    started = time.perf_counter()
    peak = measure_peak_flops(torch.float32, "cpu", size=128, seconds=0.1)
    assert time.perf_counter() - started < 2.0
    assert 1e8 < peak < 1e15  # any CPU core does 0.1 GFLOP/s; nothing here does a PFLOP/s
    with pytest.raises(ValueError, match="floating"):
        measure_peak_flops(torch.int32, size=8, seconds=0.01)


def test_throughput_rolling_window_and_mfu() -> None:
    speed = Throughput(window=2)
    assert speed.tokens_per_sec == 0.0 and speed.mfu(1.0, 1.0) == 0.0
    assert speed.update(100, 1.0) == 100.0
    assert speed.update(300, 1.0) == 200.0
    assert speed.update(500, 3.0) == 200.0  # (300 + 500) / (1 + 3): the first step left the window
    assert speed.total_tokens == 900 and speed.total_seconds == 5.0
    assert speed.mfu(flops_per_token=10.0, peak_flops=4000.0) == pytest.approx(0.5)
    assert speed.mfu(10.0, 0.0) == 0.0


def test_logger_writes_flushed_json_lines(tmp_path: Path) -> None:
    logger = MetricsLogger(tmp_path / "run")
    logger.log(1, {"loss": torch.tensor(2.5), "lr": np.float32(0.5), "tokens": 4096})
    logger.log(1, {"loss": float("nan")}, split="validation")
    # Flushed: readable before close.
    records = read_metrics(tmp_path / "run")
    assert [(r["step"], r["split"]) for r in records] == [(1, "train"), (1, "validation")]
    assert records[0]["loss"] == 2.5 and records[0]["lr"] == 0.5 and records[0]["tokens"] == 4096
    assert abs(records[0]["time"] - time.time()) < 60
    assert math.isnan(records[1]["loss"])
    with pytest.raises(ValueError, match="reserved"):
        logger.log(2, {"step": 3.0})
    with pytest.raises(ValueError, match="scalar"):
        logger.log(2, {"loss": torch.ones(2)})
    logger.close()
    logger.log(3, {"loss": 1.0})  # after close: nothing
    assert len(read_metrics(tmp_path / "run")) == 2


def test_disabled_logger_writes_nothing(tmp_path: Path) -> None:
    with MetricsLogger(tmp_path / "run", enabled=False, tensorboard=True) as logger:
        logger.log(1, {"loss": 1.0})
    assert not (tmp_path / "run").exists()


def write_lines(path: Path, *records: dict, tail: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:
        file.write("".join(json.dumps(r) + "\n" for r in records) + tail)


def test_torn_last_line_is_skipped_then_cut_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    write_lines(path, {"step": 1, "split": "train", "loss": 3.0}, tail='{"step": 2, "split": "tr')
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a torn last line is expected, not worth a warning
        assert [r["step"] for r in read_metrics(tmp_path)] == [1]
        with MetricsLogger(tmp_path) as logger:
            logger.log(2, {"loss": 2.0})
        assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(1, 3.0), (2, 2.0)]
    assert path.read_text().count("\n") == 2  # the fragment was cut, not glued to the next line


def test_a_torn_log_without_any_newline_is_emptied(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "lo')
    with MetricsLogger(tmp_path) as logger:
        logger.log(5, {"loss": 1.0})
    assert [r["step"] for r in read_metrics(tmp_path)] == [5]


def test_bad_complete_line_warns_and_is_skipped(tmp_path: Path) -> None:
    write_lines(tmp_path / "metrics.jsonl", {"step": 1, "loss": 3.0}, tail="garbage\n")
    write_lines(tmp_path / "metrics.jsonl", {"step": 2, "loss": 2.0})
    with pytest.warns(UserWarning, match=r"metrics\.jsonl:2: not a metrics record"):
        assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_resumed_run_replaces_the_steps_it_logs_again(tmp_path: Path) -> None:
    # First run: steps 1..10 with validation at 5 and 10; checkpoint at 5, killed after 10.
    with MetricsLogger(tmp_path) as logger:
        for step in range(1, 11):
            logger.log(step, {"loss": 10.0 - step, "attempt": 1})
            if step % 5 == 0:
                logger.log(step, {"loss": 9.0 - step}, split="validation")
    # Resumed from step 5: re-logs 6..8, then killed again.
    with MetricsLogger(tmp_path) as logger:
        for step in range(6, 9):
            logger.log(step, {"loss": 20.0 - step, "attempt": 2})
    records = read_metrics(tmp_path)
    train = [(r["step"], r["attempt"]) for r in records if r["split"] == "train"]
    assert train == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 2), (7, 2), (8, 2)]
    validation = [r["step"] for r in records if r["split"] == "validation"]
    assert validation == [5]  # step 10's came from the abandoned continuation
    # A resume that starts by re-logging its checkpoint step's validation keeps that step's train record.
    with MetricsLogger(tmp_path) as logger:
        logger.log(5, {"loss": 0.5}, split="validation")
    records = read_metrics(tmp_path)
    assert [(r["step"], r["split"], r["loss"]) for r in records] == [
        *[(s, "train", 10.0 - s) for s in range(1, 6)],
        (5, "validation", 0.5),
    ]


def test_read_metrics_without_a_log_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(PuyuError, match=r"metrics\.jsonl: no metrics log") as error:
        read_metrics(tmp_path)
    assert "\n" not in str(error.value)


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed")
def test_tensorboard_missing_warns_once_and_logs_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "_tensorboard_warned", False)
    with pytest.warns(UserWarning, match="tensorboard is not installed"):
        logger = MetricsLogger(tmp_path, tensorboard=True)
    logger.log(1, {"loss": 1.0})
    logger.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with MetricsLogger(tmp_path, tensorboard=True) as logger:
            logger.log(2, {"loss": 0.5})
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_tensorboard_event_files(tmp_path: Path) -> None:
    with MetricsLogger(tmp_path, tensorboard=True) as logger:
        logger.log(1, {"loss": 1.0})
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
