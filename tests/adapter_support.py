"""LoRA adapter folders with updates large enough to change a tiny model's greedy choices."""

from __future__ import annotations

from pathlib import Path

import torch

from puyu.finetune.adapter import save_adapter
from puyu.finetune.lora import LoraConfig, apply_lora, lora_modules
from puyu.model import load_model


def make_adapter(base: Path, out: Path, seed: int, targets: list[str]) -> Path:
    """A random LoRA adapter (r=4) for `base` on `targets`, saved to `out`."""
    model = load_model(base, dtype="float32")
    lora = LoraConfig(r=4, alpha=8.0, target_modules=targets)
    apply_lora(model, lora, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # B = 0 after init: make the update large enough to change greedy choices
        for _, layer in lora_modules(model):
            layer.lora_A.copy_(torch.randn(layer.lora_A.shape, generator=generator) * 0.5)
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.5)
    return save_adapter(model, out, lora, base)
