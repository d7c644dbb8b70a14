"""Learning-rate schedules: linear warmup, then cosine, linear, constant or warmup-stable-decay.

Every schedule is a pure function of the step, `lr_multiplier`, that scales the optimizer's base
learning rate; `build_scheduler` wraps it in a `LambdaLR`. Steps are counted from 0: step `s` is the
multiplier of the `s`-th optimizer update, and the schedule is written in terms of `t = s + 1`, the
number of updates done once that one lands. So warmup never starts at a zero learning rate (the first
update gets `1 / warmup_steps`), the peak is reached exactly at the last warmup update, and the last
update of the run (`s = max_steps - 1`) gets exactly `min_lr_ratio`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from puyu.errors import PuyuError

ScheduleKind = Literal["cosine", "wsd", "constant", "linear"]
SCHEDULE_KINDS: tuple[str, ...] = ("cosine", "wsd", "constant", "linear")


@dataclass
class ScheduleConfig:
    """How the learning rate moves over a run.

    Args:
        kind: after warmup, "cosine" (half a cosine down to `min_lr_ratio`), "linear" (a straight line
            down to it), "constant" (stays at the peak; `min_lr_ratio` unused) or "wsd"
            (warmup-stable-decay, as in MiniCPM: stays at the peak, then the last `decay_fraction` of
            the run decays to `min_lr_ratio`).
        warmup_steps: updates of linear warmup from `1 / warmup_steps` of the peak up to the peak.
        min_lr_ratio: final learning rate as a fraction of the peak.
        decay_fraction: wsd only: the share of `max_steps` spent decaying. The decay follows `1 - sqrt`
            (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
            Durations": it matches or beats linear and cosine cooldowns); 0 keeps the plateau to the end,
            which suits a run meant to be continued and cooled down later from a checkpoint.
    """

    kind: ScheduleKind = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    decay_fraction: float = 0.2

    def __post_init__(self) -> None:
        # ValueError: `configuration.from_dict` prefixes it with the file and key path.
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {', '.join(SCHEDULE_KINDS)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction must be in [0, 1], got {self.decay_fraction}")


def wsd_decay_steps(max_steps: int, config: ScheduleConfig) -> int:
    """Updates in the decay phase of a wsd schedule: `decay_fraction` of the run (at least one when the
    fraction is positive), never reaching back into warmup."""
    if config.decay_fraction <= 0.0:
        return 0
    warmup = min(config.warmup_steps, max_steps)
    return min(max(1, round(config.decay_fraction * max_steps)), max_steps - warmup)


def lr_multiplier(step: int, max_steps: int, config: ScheduleConfig) -> float:
    """The factor on the peak learning rate for update `step` (0-based) of a `max_steps` run.

    Args:
        step: index of the update; steps past the end stay at the final value.
        max_steps: updates in the whole run.
        config: the schedule.

    Returns:
        A multiplier in (0, 1] (or exactly `min_lr_ratio` at the end, which may be 0).
    """
    if max_steps < 1:
        raise PuyuError(f"max_steps must be at least 1, got {max_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    t = min(step + 1, max_steps)  # updates done after this one
    warmup = min(config.warmup_steps, max_steps)
    if t <= warmup:
        return t / warmup
    if config.kind == "constant":
        return 1.0
    floor = config.min_lr_ratio
    if config.kind == "wsd":
        decay = wsd_decay_steps(max_steps, config)
        start = max_steps - decay
        if t <= start:
            return 1.0
        progress = (t - start) / decay
        return floor + (1.0 - floor) * (1.0 - math.sqrt(progress))
    progress = (t - warmup) / (max_steps - warmup)
    if config.kind == "linear":
        return floor + (1.0 - floor) * (1.0 - progress)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, max_steps: int, config: ScheduleConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` following `lr_multiplier`: call `scheduler.step()` once after each `optimizer.step()`.

    The multiplier is a plain closure, so the scheduler's `state_dict` holds only its position
    (`last_epoch`); after a resume the schedule comes from the current config, and a run may be
    lengthened by raising `max_steps`.

    Args:
        optimizer: the optimizer whose groups' `lr` is the peak learning rate.
        max_steps: updates in the whole run.
        config: the schedule.
    """
    lr_multiplier(0, max_steps, config)  # check the arguments now rather than at the first step

    def multiplier(step: int) -> float:
        return lr_multiplier(step, max_steps, config)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
