"""Run plots: valid PNGs for the metrics a run has, the smoothing, and `puyu plot`."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from puyu.commands import plot as plot_command
from puyu.errors import PuyuError
from puyu.train.metrics import MetricsLogger
from puyu.train.plot import plot_run, smooth

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fake_run(run_dir: Path, steps: int = 300, *, throughput: bool = True) -> None:
    rng = np.random.default_rng(0)
    with MetricsLogger(run_dir) as logger:
        for step in range(1, steps + 1):
            metrics = {"loss": 8.0 * math.exp(-step / 60) + 2.0 + 0.1 * rng.random(), "lr": 3e-4 * min(1, step / 20)}
            if throughput:
                metrics |= {"tokens_per_sec": 4000.0 + 100 * rng.random(), "mfu": 0.3}
            logger.log(step, metrics)
            if step % 50 == 0:
                logger.log(step, {"loss": 8.0 * math.exp(-step / 60) + 2.1, "ppl": 1.0}, split="validation")


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, _ = imread(path).shape
    assert height > 200 and width > 300


def test_plot_run_writes_the_three_plots(tmp_path: Path) -> None:
    fake_run(tmp_path / "run")
    written = plot_run(tmp_path / "run")
    assert [p.name for p in written] == ["loss.png", "lr.png", "throughput.png"]
    assert all(p.parent == tmp_path / "run" / "plots" for p in written)
    for path in written:
        assert_png(path)
    assert sorted(p.name for p in (tmp_path / "run" / "plots").iterdir()) == ["loss.png", "lr.png", "throughput.png"]


def test_missing_metrics_leave_their_plot_out(tmp_path: Path) -> None:
    fake_run(tmp_path / "run", steps=3, throughput=False)
    written = plot_run(tmp_path / "run", tmp_path / "elsewhere")
    assert [p.name for p in written] == ["loss.png", "lr.png"]
    assert all(p.parent == tmp_path / "elsewhere" for p in written)
    with MetricsLogger(tmp_path / "other") as logger:
        logger.log(1, {"grad_norm": 1.0})
    assert plot_run(tmp_path / "other") == []
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    assert plot_run(tmp_path / "empty") == []
    assert not (tmp_path / "empty" / "plots").exists()


def test_a_diverged_run_still_plots(tmp_path: Path) -> None:
    with MetricsLogger(tmp_path) as logger:
        for step, loss in enumerate([5.0, 4.0, float("inf"), float("nan"), 900.0], start=1):
            logger.log(step, {"loss": loss})
    (loss_png,) = plot_run(tmp_path)
    assert_png(loss_png)


def test_smooth_is_a_debiased_ema_that_skips_nan() -> None:
    out = smooth(np.array([1.0, 3.0, np.nan, 3.0]), weight=0.5)
    assert out[0] == 1.0  # debiased: the first point is itself
    assert out[1] == pytest.approx((0.5 * 0.5 + 1.5) / 0.75)
    assert math.isnan(out[2])
    assert out[3] == pytest.approx((0.5 * 1.75 + 1.5) / 0.875)
    assert np.array_equal(smooth(np.arange(50.0)), np.arange(50.0))  # short series: no smoothing


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="puyu")
    plot_command.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_plot_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_run(tmp_path / "run", steps=20)
    args = parse(["plot", str(tmp_path / "run"), "--out", str(tmp_path / "out")])
    assert args.handler(args) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "out" / name) for name in ("loss.png", "lr.png", "throughput.png")]

    args = parse(["plot", str(tmp_path / "empty")])
    with pytest.raises(PuyuError, match=r"metrics\.jsonl: no metrics log") as error:
        args.handler(args)
    assert "\n" not in str(error.value)
