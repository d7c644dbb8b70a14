"""Learning-rate schedules: values at known steps for each kind, and the LambdaLR wrapper."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch

from puyu.configuration import from_dict
from puyu.errors import PuyuError
from puyu.train.schedule import ScheduleConfig, build_scheduler, lr_multiplier, wsd_decay_steps


def values(kind: str, max_steps: int = 110, **settings: float) -> list[float]:
    config = ScheduleConfig(kind=kind, **{"warmup_steps": 10, "min_lr_ratio": 0.1, **settings})  # type: ignore[arg-type]
    return [lr_multiplier(step, max_steps, config) for step in range(max_steps)]


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant", "wsd"])
def test_warmup_starts_above_zero_and_peaks_at_its_last_step(kind: str) -> None:
    lr = values(kind)
    assert lr[0] == pytest.approx(0.1)  # (0 + 1) / 10
    assert lr[4] == pytest.approx(0.5)
    assert lr[9] == 1.0
    assert all(a < b for a, b in pairwise(lr[:10]))


def test_cosine_known_values() -> None:
    lr = values("cosine")  # decay over t = 11..110, 100 updates
    assert lr[34] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))  # a quarter of the way
    assert lr[59] == pytest.approx(0.55)  # half way: midpoint between the peak and the floor
    assert lr[109] == pytest.approx(0.1)  # the last update ends exactly at min_lr_ratio
    assert all(a >= b for a, b in pairwise(lr[9:]))


def test_linear_known_values() -> None:
    lr = values("linear")
    assert lr[34] == pytest.approx(0.1 + 0.9 * 0.75)
    assert lr[59] == pytest.approx(0.55)
    assert lr[109] == pytest.approx(0.1)
    steps = [b - a for a, b in pairwise(lr[10:])]
    assert max(steps) == pytest.approx(min(steps)) == pytest.approx(-0.009)


def test_constant_ignores_the_floor() -> None:
    lr = values("constant")
    assert lr[10:] == [1.0] * 100


def test_wsd_plateau_then_one_minus_sqrt_decay() -> None:
    config = ScheduleConfig(kind="wsd", warmup_steps=10, min_lr_ratio=0.1, decay_fraction=0.2)
    assert wsd_decay_steps(100, config) == 20
    lr = [lr_multiplier(step, 100, config) for step in range(100)]
    assert lr[9:80] == [1.0] * 71  # stable until 80 updates are done
    assert lr[80] == pytest.approx(0.1 + 0.9 * (1 - math.sqrt(1 / 20)))
    assert lr[84] == pytest.approx(0.55)  # a quarter into the decay: 1 - sqrt(0.25) = 0.5
    assert lr[99] == pytest.approx(0.1)
    assert all(a > b for a, b in pairwise(lr[79:]))


def test_wsd_without_decay_keeps_the_plateau() -> None:
    assert values("wsd", decay_fraction=0.0)[10:] == [1.0] * 100


def test_wsd_decay_never_reaches_into_warmup() -> None:
    config = ScheduleConfig(kind="wsd", warmup_steps=10, decay_fraction=1.0, min_lr_ratio=0.0)
    assert wsd_decay_steps(50, config) == 40
    lr = [lr_multiplier(step, 50, config) for step in range(50)]
    assert lr[9] == 1.0 and lr[10] < 1.0 and lr[49] == 0.0


def test_edges() -> None:
    cosine = ScheduleConfig(kind="cosine", warmup_steps=0, min_lr_ratio=0.0)
    assert lr_multiplier(0, 100, cosine) == pytest.approx(0.5 * (1 + math.cos(math.pi / 100)))
    assert lr_multiplier(500, 100, cosine) == 0.0  # past the end: the final value
    long_warmup = ScheduleConfig(warmup_steps=100)
    assert [lr_multiplier(s, 4, long_warmup) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]  # warmup clamped
    assert lr_multiplier(0, 1, ScheduleConfig(warmup_steps=0, min_lr_ratio=0.3)) == pytest.approx(0.3)
    with pytest.raises(PuyuError, match="max_steps"):
        lr_multiplier(0, 0, ScheduleConfig())


def test_config_errors_name_the_key() -> None:
    with pytest.raises(PuyuError, match=r"train.yaml.schedule: warmup_steps must be >= 0"):
        from_dict(ScheduleConfig, {"warmup_steps": -1}, "train.yaml.schedule")
    with pytest.raises(PuyuError, match="min_lr_ratio"):
        from_dict(ScheduleConfig, {"min_lr_ratio": 1.5})
    with pytest.raises(PuyuError, match="decay_fraction"):
        from_dict(ScheduleConfig, {"decay_fraction": -0.1})
    with pytest.raises(PuyuError, match="'step'"):
        from_dict(ScheduleConfig, {"kind": "step"})


@pytest.mark.parametrize("kind", ["cosine", "wsd"])
def test_lambda_lr_applies_the_multiplier_of_each_update(kind: str) -> None:
    config = ScheduleConfig(kind=kind, warmup_steps=3, min_lr_ratio=0.1, decay_fraction=0.3)
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([param], lr=0.5)
    scheduler = build_scheduler(optimizer, 20, config)
    for step in range(20):
        # The lr in the group when optimizer.step() runs is the one this update uses.
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * lr_multiplier(step, 20, config))
        if step == 12:  # a resume: a fresh optimizer and scheduler restored from state dicts
            saved_optimizer, saved_scheduler = optimizer.state_dict(), scheduler.state_dict()
            optimizer = torch.optim.SGD([param], lr=0.5)
            scheduler = build_scheduler(optimizer, 20, config)
            optimizer.load_state_dict(saved_optimizer)
            scheduler.load_state_dict(saved_scheduler)
            assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * lr_multiplier(step, 20, config))
        param.grad = torch.ones(2)
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.5 * 0.1)  # past the end: the floor
