"""Several LoRA adapters over one base model, batched: every token row gets its own adapter's update.

Each adapted projection becomes a `MultiLoRALinear`: the base layer runs once over the whole flattened
batch, then each adapter present in the step adds s · (x A^T) B^T to its own rows (`index_add_`). The runner
tells the shared `AdapterRouter` which adapter each row belongs to before the forward; adapter 0 is the
base model alone. The KV cache needs nothing: each sequence's keys and values are computed with its own
adapter, and the block manager seeds prefix hashes with the adapter so blocks are shared only within one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from puyu.errors import PuyuError
from puyu.finetune.adapter import load_adapter, read_adapter_config
from puyu.finetune.lora import lora_modules
from puyu.quant.loading import set_module


class AdapterRouter:
    """Which rows of the current forward each adapter owns (set by the runner before every forward)."""

    def __init__(self) -> None:
        self.groups: list[tuple[int, torch.Tensor]] = []

    def set(self, token_adapters: list[int], device: torch.device) -> None:
        """`token_adapters[i]`: the adapter of row i (0 = none)."""
        rows: dict[int, list[int]] = {}
        for row, adapter in enumerate(token_adapters):
            if adapter:
                rows.setdefault(adapter, []).append(row)
        self.groups = [(a, torch.tensor(r, dtype=torch.long, device=device)) for a, r in sorted(rows.items())]


class MultiLoRALinear(nn.Module):
    """A base projection plus one low-rank update per adapter, applied to that adapter's rows only.

    Args:
        base_layer: the frozen projection (nn.Linear or a quantized linear).
        router: the model's shared `AdapterRouter`.
    """

    def __init__(self, base_layer: nn.Module, router: AdapterRouter) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.router = router
        self.in_features: int = base_layer.in_features
        self.out_features: int = base_layer.out_features
        self.updates: dict[int, tuple[torch.Tensor, torch.Tensor, float]] = {}

    def add(self, adapter: int, a: torch.Tensor, b: torch.Tensor, scale: float) -> None:
        self.updates[adapter] = (a, b, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        if not self.router.groups:
            return y
        flat_x = x.reshape(-1, x.shape[-1])
        flat_y = y.reshape(-1, y.shape[-1])
        for adapter, rows in self.router.groups:
            update = self.updates.get(adapter)
            if update is None:
                continue
            a, b, scale = update
            delta = (flat_x.index_select(0, rows).to(a.dtype) @ a.t()) @ b.t()
            flat_y.index_add_(0, rows, (delta * scale).to(y.dtype))
        return flat_y.view(y.shape)


def install_adapters(model: nn.Module, adapters: Mapping[str, str | os.PathLike[str]]) -> dict[str, int]:
    """Give `model` the LoRA adapters by name; returns name → adapter number (1, 2, ... in the given order).

    Args:
        model: a `CausalLM` without adapters, in its serving dtype and device.
        adapters: served name → PEFT LoRA adapter folder.

    Raises:
        PuyuError: an adapter that does not fit the base, or that trains token rows (merge those instead).
    """
    harvested: dict[str, dict[int, tuple[torch.Tensor, torch.Tensor, float]]] = {}
    numbers: dict[str, int] = {}
    weight = next(model.parameters())
    for number, (name, folder) in enumerate(adapters.items(), start=1):
        raw = read_adapter_config(folder)
        if raw.get("trainable_token_indices"):
            raise PuyuError(
                f"adapter {name} ({folder}) trains token embedding rows, which cannot be served beside other "
                f"adapters; merge it: puyu merge BASE {folder} --out DIR"
            )
        load_adapter(model, folder)
        for path, module in list(lora_modules(model)):
            a = module.lora_A.detach().to(device=weight.device, dtype=torch.float32)
            b = module.lora_B.detach().to(device=weight.device, dtype=torch.float32)
            harvested.setdefault(path, {})[number] = (a, b, module.alpha / module.r)
            set_module(model, path, module.base_layer)  # unwrap: the next adapter loads onto the plain base
        numbers[name] = number
    router = AdapterRouter()
    for path, updates in harvested.items():
        layer = MultiLoRALinear(model.get_submodule(path), router)
        for number, (a, b, scale) in updates.items():
            layer.add(number, a, b, scale)
        set_module(model, path, layer)
    model.adapter_router = router
    return numbers


def parse_adapter_specs(specs: list[str]) -> dict[str, Path]:
    """`name=DIR` strings (LMDeploy's `--adapters`, vLLM's `--lora-modules`) → name → folder."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        name = name.strip()
        if not sep or not name or not folder:
            raise PuyuError(f"--adapters {spec!r}: expected NAME=DIR")
        if name in out:
            raise PuyuError(f"--adapters: the name {name!r} is given twice")
        path = Path(folder).expanduser()
        read_adapter_config(path)  # fails now, with the folder's name, rather than after the model loaded
        out[name] = path
    return out
