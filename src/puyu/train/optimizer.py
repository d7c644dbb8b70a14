"""AdamW with decoupled weight decay on the matrices only, and the fastest update kernel torch offers.

Parameter groups follow the common practice of GPT-2/nanoGPT, Llama and torchtitan recipes: every
tensor with two or more dimensions decays (attention and MLP projections, the output projection, and
the token embedding), while vectors (RMSNorm scales, biases) do not: decaying a norm's gain toward 0 or a
bias toward 0 only fights the model. Embeddings decay as in those Llama recipes (OLMo 2 is a known
exception that leaves them undecayed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from puyu.errors import PuyuError

Implementation = Literal["auto", "fused", "foreach", "for"]
IMPLEMENTATIONS: tuple[str, ...] = ("auto", "fused", "foreach", "for")


@dataclass
class OptimizerConfig:
    """AdamW settings.

    Args:
        lr: peak learning rate (the schedule scales it).
        weight_decay: decoupled weight decay on matrices (see the module docstring for which).
        betas: Adam's moment decay rates; 0.95 for the second moment is the LLM-pretraining choice
            (faster reaction to gradient spikes than 0.999).
        eps: Adam's denominator epsilon.
        implementation: update kernel: "fused" (one kernel for all tensors), "foreach" (batched
            per-op kernels), "for" (a Python loop over tensors), or "auto": fused where torch has a
            fused kernel for every parameter's device and dtype, else foreach.
    """

    lr: float = 3e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    implementation: Implementation = "auto"

    def __post_init__(self) -> None:
        # ValueError: `configuration.from_dict` prefixes it with the file and key path.
        self.betas = tuple(self.betas)  # type: ignore[assignment]  # YAML gives a list
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {list(self.betas)}")
        if self.eps <= 0:
            raise ValueError(f"eps must be positive, got {self.eps}")
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation {self.implementation!r} is not one of {', '.join(IMPLEMENTATIONS)}")


def split_decay_parameters(model: nn.Module) -> tuple[dict[str, nn.Parameter], dict[str, nn.Parameter]]:
    """Trainable parameters by name, split into (decayed, not decayed).

    Only parameters with `requires_grad` count (adapters freeze the rest); a tied weight appears once,
    under its first name (`named_parameters` drops repeats).

    Args:
        model: the model to train.
    """
    decay: dict[str, nn.Parameter] = {}
    no_decay: dict[str, nn.Parameter] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay)[name] = param
    return decay, no_decay


def fused_supported(params: list[torch.Tensor]) -> bool:
    """Whether torch has a fused AdamW kernel for every tensor's device and dtype."""
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices

        devices = set(_get_fused_kernels_supported_devices())
    except ImportError:  # private helper; these two have had fused AdamW since torch 2.4
        devices = {"cuda", "cpu"}
    return all(p.device.type in devices and torch.is_floating_point(p) for p in params)


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.AdamW:
    """AdamW over the model's trainable parameters in two groups, "decay" and "no_decay".

    Each group carries a "name" key (kept in the optimizer's state dict); an empty group is left out.

    Args:
        model: the model to train, already on its device and in its dtype (the fused choice depends on both).
        config: optimizer settings.
    """
    decay, no_decay = split_decay_parameters(model)
    params = [*decay.values(), *no_decay.values()]
    if not params:
        raise PuyuError("the model has no trainable parameters (all have requires_grad=False)")
    groups = [
        {"name": "decay", "params": list(decay.values()), "weight_decay": config.weight_decay},
        {"name": "no_decay", "params": list(no_decay.values()), "weight_decay": 0.0},
    ]
    kind = config.implementation
    if kind == "auto":
        kind = "fused" if fused_supported(params) else "foreach"
    elif kind == "fused" and not fused_supported(params):
        where = sorted({f"{p.device.type}/{p.dtype}" for p in params})
        raise PuyuError(f"optimizer.implementation=fused: torch has no fused AdamW for {', '.join(where)}")
    return torch.optim.AdamW(
        [g for g in groups if g["params"]],
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
        fused=kind == "fused",
        foreach=kind == "foreach",
    )


def optimizer_implementation(optimizer: torch.optim.Optimizer) -> str:
    """ "fused", "foreach" or "for": the kernel an optimizer built here runs (for logs and tests)."""
    defaults = optimizer.defaults
    if defaults.get("fused"):
        return "fused"
    return "foreach" if defaults.get("foreach") else "for"
