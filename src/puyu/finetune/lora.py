"""LoRA: low-rank adapters on a frozen base model (Hu et al., 2021), numerically as PEFT computes them.

Each targeted projection y = base(x) becomes y = base(x) + s · B(A(dropout(x))) with A [r, in] drawn like
PEFT (Kaiming-uniform, a = √5), B [out, r] zeros (so training starts exactly at the base model) and s = alpha / r.
The base layer (an `nn.Linear`, or an `NF4Linear` for QLoRA) stays frozen and untouched; merging folds
s · B @ A into a plain `nn.Linear`'s weight.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from puyu.errors import PuyuError
from puyu.finetune.trainable_tokens import (
    apply_trainable_tokens,
    merge_trainable_tokens,
    normalize_token_indices,
    token_modules,
)

# puyu's module names (the HF Llama layout) and the InternLM2 names users may know them by.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
INTERNLM2_TARGETS = {
    "wqkv": ("q_proj", "k_proj", "v_proj"),
    "wo": ("o_proj",),
    "w1": ("gate_proj",),
    "w3": ("up_proj",),
    "w2": ("down_proj",),
}


@dataclass
class LoraConfig:
    """Which projections get adapters, and their shape.

    Args:
        r: adapter rank.
        alpha: scale numerator: the update is (alpha / r) · B @ A.
        dropout: dropout on the adapter's input during training (PEFT's `lora_dropout`).
        target_modules: projection names (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; the
            InternLM2 names wqkv, wo, w1, w2, w3 are accepted and translated), or ["all-linear"].
        trainable_token_indices: token ids whose embedding rows are trained too (PEFT's field of that name): a
            list (the embedding; with tied embeddings the output head shares them), or ids per matrix,
            `{"embed_tokens": [...], "lm_head": [...]}` (InternLM2's `tok_embeddings` / `output` also work).
    """

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    trainable_token_indices: list[int] | dict[str, list[int]] | None = None

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise PuyuError(f"lora.r must be positive, got {self.r}")
        if self.alpha <= 0:
            raise PuyuError(f"lora.alpha must be positive, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise PuyuError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        self.target_modules = normalize_targets(self.target_modules)
        normalize_token_indices(self.trainable_token_indices)  # refuse a bad value now, not when applied

    @property
    def scaling(self) -> float:
        return self.alpha / self.r


def normalize_targets(names: list[str] | str) -> list[str]:
    """Target names → puyu's projection names, deduplicated, in layer order; PuyuError for an unknown name."""
    if isinstance(names, str):
        names = [names]
    wanted: set[str] = set()
    for name in names:
        if name == "all-linear":
            wanted.update(LORA_TARGETS)
        elif name in LORA_TARGETS:
            wanted.add(name)
        elif name in INTERNLM2_TARGETS:
            wanted.update(INTERNLM2_TARGETS[name])
        else:
            known = ", ".join((*LORA_TARGETS, *INTERNLM2_TARGETS, "all-linear"))
            raise PuyuError(f"lora.target_modules: unknown module {name!r} (known: {known})")
    if not wanted:
        raise PuyuError("lora.target_modules is empty")
    return [name for name in LORA_TARGETS if name in wanted]


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update.

    Args:
        base_layer: anything with `in_features`, `out_features` and a forward (nn.Linear, NF4Linear).
        r: rank.
        alpha: the update is scaled by alpha / r.
        dropout: dropout probability on the adapter's input in training mode.
        generator: random source for A's initialisation.
    """

    def __init__(
        self,
        base_layer: nn.Module,
        r: int,
        alpha: float,
        dropout: float = 0.0,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.in_features: int = base_layer.in_features
        self.out_features: int = base_layer.out_features
        self.r = r
        self.alpha = alpha
        self.scaling = alpha / r
        self.dropout = dropout
        self.enabled = True
        dtype = lora_dtype(base_layer)
        device = _device_of(base_layer)
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, dtype=dtype, device=device))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, dtype=dtype, device=device))
        if device.type != "meta":
            # PEFT's initialisation: A like nn.Linear's default weights, B zero, so the update starts at zero.
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5), generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if not self.enabled:
            return out
        if self.dropout and self.training:
            x = F.dropout(x, self.dropout, training=True)
        # Scale the narrow [.., r] activation, not the wide output, and let the second GEMM add into the base
        # output (addmm's beta=1): no extra pass over the [tokens, out] tensor in forward or backward.
        h = F.linear(x.to(self.lora_A.dtype), self.lora_A) * self.scaling
        flat = torch.addmm(
            out.reshape(-1, self.out_features), h.reshape(-1, self.r).to(out.dtype), self.lora_B.t().to(out.dtype)
        )
        return flat.view(out.shape)

    def delta_weight(self) -> torch.Tensor:
        """s · B @ A, the [out, in] update the adapter adds to the base weight."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def extra_repr(self) -> str:
        shape = f"in={self.in_features}, out={self.out_features}"
        return f"{shape}, r={self.r}, alpha={self.alpha:g}, dropout={self.dropout:g}"


def _device_of(module: nn.Module) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def lora_dtype(base_layer: nn.Module) -> torch.dtype:
    """The adapter's dtype: float32, or float64 over a float64 base.

    Over a bf16/fp16 base the adapter still trains in float32, as PEFT does by default
    (`autocast_adapter_dtype`): its updates are small relative to its weights, which half precision rounds away.
    """
    weight = getattr(base_layer, "weight", None)
    dtype = getattr(base_layer, "compute_dtype", None) or (weight.dtype if isinstance(weight, torch.Tensor) else None)
    return torch.float64 if dtype == torch.float64 else torch.float32


def _is_base_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (
        hasattr(module, "in_features") and hasattr(module, "dequantize") and not isinstance(module, LoRALinear)
    )


def target_linears(model: nn.Module, targets: list[str]) -> Iterator[tuple[str, nn.Module, str, nn.Module]]:
    """(qualified name, parent, attribute, layer) of every decoder projection named in `targets`."""
    for name, module in list(model.named_modules()):
        if not name.startswith("model.layers."):
            continue
        attr = name.rpartition(".")[2]
        if attr in targets and (_is_base_linear(module) or isinstance(module, LoRALinear)):
            parent = model.get_submodule(name.rpartition(".")[0])
            yield name, parent, attr, module


def apply_lora(
    model: nn.Module,
    config: LoraConfig,
    *,
    seed: int = 0,
    ranks: dict[str, tuple[int, float]] | None = None,
    modules: set[str] | None = None,
) -> nn.Module:
    """Freeze every base parameter and wrap each targeted projection in a `LoRALinear` (and the matrices named
    in `config.trainable_token_indices` in `TrainableTokens`), in place.

    Args:
        model: a `CausalLM` (its projections may be NF4Linear).
        config: rank, alpha, dropout and targets.
        seed: seed of A's initialisation (one generator, layers in order: the same seed gives the same adapter).
        ranks: per-module (rank, alpha) overriding `config`, keyed by qualified module name.
        modules: wrap only these qualified module names (an adapter loaded from disk); default every target.

    Returns:
        The same model.
    """
    for param in model.parameters():
        param.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    found = 0
    for name, parent, attr, module in target_linears(model, config.target_modules):
        if modules is not None and name not in modules:
            continue
        if isinstance(module, LoRALinear):
            raise PuyuError(f"{name} already has a LoRA adapter (merge or remove it first)")
        r, alpha = (ranks or {}).get(name, (config.r, config.alpha))
        setattr(parent, attr, LoRALinear(module, r, alpha, config.dropout, generator=generator))
        found += 1
    if not found:
        raise PuyuError(f"no modules named {', '.join(config.target_modules)} in the model's decoder layers")
    apply_trainable_tokens(model, normalize_token_indices(config.trainable_token_indices))
    return model


def lora_modules(model: nn.Module) -> Iterator[tuple[str, LoRALinear]]:
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            yield name, module


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The adapter weights (A and B of every LoRALinear, and trainable token rows): what the optimizer trains."""
    params = [p for _, m in lora_modules(model) for p in (m.lora_A, m.lora_B)]
    rows = {id(m.trainable_tokens_delta): m.trainable_tokens_delta for _, m in token_modules(model)}
    return params + list(rows.values())  # a tied head shares the embedding's rows: listed once


@contextmanager
def lora_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Run the base model: inside the block every adapter is bypassed (DPO's reference model)."""
    modules: list[nn.Module] = [m for _, m in lora_modules(model)]
    modules += [m for _, m in token_modules(model)]
    previous = [m.enabled for m in modules]
    for m in modules:
        m.enabled = False
    try:
        yield model
    finally:
        for m, state in zip(modules, previous, strict=True):
            m.enabled = state


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter (and trained token rows) into its base weight and unwrap it, in place; returns the model.

    An NF4 base is dequantized first, so the merged layer is a plain `nn.Linear` in the adapter's dtype.
    Parameters stay frozen (the result is an inference model).
    """
    for name, module in list(lora_modules(model)):
        base = module.base_layer
        if isinstance(base, nn.Linear):
            merged = base
            merged.weight.data += module.delta_weight().to(base.weight.dtype)
        else:
            weight = base.dequantize().to(module.lora_A.dtype) + module.delta_weight()
            bias = getattr(base, "bias", None)
            merged = nn.Linear(module.in_features, module.out_features, bias=bias is not None, device=weight.device,
                               dtype=weight.dtype)  # fmt: skip
            merged.weight.data = weight
            if bias is not None:
                merged.bias.data = bias.detach().to(weight.dtype)
            merged.requires_grad_(False)
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, merged)
    merge_trainable_tokens(model)
    return model
