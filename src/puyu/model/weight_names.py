"""Checkpoint tensor names of each family, mapped to and from puyu's own (the HF Llama layout).

Llama and Qwen2 checkpoints use puyu's names as they are. InternLM2 renames every module and fuses
q/k/v into one `wqkv` whose rows are grouped per key/value head: for each of the Hkv heads, its G
query heads, then its key head, then its value head (G = heads / kv_heads). Splitting and re-fusing
are pure reshapes, so conversion in either direction is bit-exact.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import torch

from puyu.model.config import Family, ModelConfig

# InternLM2 per-layer module names → Llama-layout names (q/k/v handled through wqkv).
_INTERNLM2_LAYER = {
    "attention.wo": "self_attn.o_proj",
    "feed_forward.w1": "mlp.gate_proj",
    "feed_forward.w3": "mlp.up_proj",
    "feed_forward.w2": "mlp.down_proj",
    "attention_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_INTERNLM2_TOP = {
    "model.tok_embeddings.weight": "model.embed_tokens.weight",
    "model.norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)\.(weight|bias)$")

# Tensors some checkpoints carry that hold no weights (old Llama exports saved the rope table).
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def is_ignored(name: str) -> bool:
    return name.endswith(IGNORED_SUFFIXES)


def internal_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter of puyu's model for `config` with its shape, in checkpoint order (lm_head omitted when tied)."""
    d, hd, inner = config.hidden_size, config.head_dim or 0, config.intermediate_size
    q_rows, kv_rows = config.num_heads * hd, config.num_kv_heads * hd
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (config.vocab_size, d)}
    for i in range(config.num_layers):
        p = f"model.layers.{i}."
        for x, rows in zip("qkv", (q_rows, kv_rows, kv_rows), strict=True):
            shapes[p + f"self_attn.{x}_proj.weight"] = (rows, d)
        if config.qkv_bias:
            for x, rows in zip("qkv", (q_rows, kv_rows, kv_rows), strict=True):
                shapes[p + f"self_attn.{x}_proj.bias"] = (rows,)
        shapes[p + "self_attn.o_proj.weight"] = (d, q_rows)
        shapes[p + "mlp.gate_proj.weight"] = (inner, d)
        shapes[p + "mlp.up_proj.weight"] = (inner, d)
        shapes[p + "mlp.down_proj.weight"] = (d, inner)
        shapes[p + "input_layernorm.weight"] = (d,)
        shapes[p + "post_attention_layernorm.weight"] = (d,)
    shapes["model.norm.weight"] = (d,)
    if not config.tie_word_embeddings:
        shapes["lm_head.weight"] = (config.vocab_size, d)
    return shapes


def checkpoint_shapes(config: ModelConfig, family: Family | None = None) -> dict[str, tuple[int, ...]]:
    """The tensors (name → shape) a checkpoint of `family` (default: config.family) holds for `config`."""
    family = family or config.family
    internal = internal_shapes(config)
    if family != "internlm2":
        return internal
    inverse_top = {v: k for k, v in _INTERNLM2_TOP.items()}
    inverse_layer = {v: k for k, v in _INTERNLM2_LAYER.items()}
    fused_rows = (config.num_heads + 2 * config.num_kv_heads) * (config.head_dim or 0)
    shapes: dict[str, tuple[int, ...]] = {}
    for name, shape in internal.items():
        match = _LAYER_RE.match(name)
        if not match:
            shapes[inverse_top[name]] = shape
            continue
        layer, module, kind = match.groups()
        prefix = f"model.layers.{layer}."
        if module in ("self_attn.k_proj", "self_attn.v_proj"):
            continue
        if module == "self_attn.q_proj":
            shapes[prefix + f"attention.wqkv.{kind}"] = (fused_rows, *shape[1:])
        else:
            shapes[prefix + f"{inverse_layer[module]}.{kind}"] = shape
    return shapes


def split_wqkv(wqkv: torch.Tensor, config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """InternLM2 fused [(H + 2·Hkv)·D, ...] → q [H·D, ...], k [Hkv·D, ...], v [Hkv·D, ...]."""
    hkv, g, d = config.num_kv_heads, config.kv_groups, config.head_dim or 0
    grouped = wqkv.reshape(hkv, g + 2, d, *wqkv.shape[1:])
    q = grouped[:, :g].reshape(hkv * g * d, *wqkv.shape[1:])
    k = grouped[:, g].reshape(hkv * d, *wqkv.shape[1:])
    v = grouped[:, g + 1].reshape(hkv * d, *wqkv.shape[1:])
    return q.contiguous(), k.contiguous(), v.contiguous()


def fuse_wqkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Inverse of `split_wqkv`."""
    hkv, g, d = config.num_kv_heads, config.kv_groups, config.head_dim or 0
    rest = q.shape[1:]
    grouped = torch.cat([q.reshape(hkv, g, d, *rest), k.reshape(hkv, 1, d, *rest), v.reshape(hkv, 1, d, *rest)], dim=1)
    return grouped.reshape(hkv * (g + 2) * d, *rest)


def to_internal(name: str, tensor: torch.Tensor, config: ModelConfig) -> list[tuple[str, torch.Tensor]]:
    """One checkpoint tensor of config.family → puyu (name, tensor) pairs; [] for an unknown name."""
    if config.family != "internlm2":
        return [(name, tensor)]
    if name in _INTERNLM2_TOP:
        return [(_INTERNLM2_TOP[name], tensor)]
    match = _LAYER_RE.match(name)
    if not match:
        return []
    layer, module, kind = match.groups()
    prefix = f"model.layers.{layer}."
    if module == "attention.wqkv":
        q, k, v = split_wqkv(tensor, config)
        return [(prefix + f"self_attn.{x}_proj.{kind}", t) for x, t in zip("qkv", (q, k, v), strict=True)]
    if module in _INTERNLM2_LAYER:
        return [(prefix + f"{_INTERNLM2_LAYER[module]}.{kind}", tensor)]
    return []


def from_internal(
    state: dict[str, torch.Tensor], config: ModelConfig, family: Family
) -> Iterator[tuple[str, torch.Tensor]]:
    """puyu's state dict → (checkpoint name, tensor) of `family`, in checkpoint order."""
    if family != "internlm2":
        for name in internal_shapes(config):
            yield name, state[name]
        return
    inverse_top = {v: k for k, v in _INTERNLM2_TOP.items()}
    yield inverse_top["model.embed_tokens.weight"], state["model.embed_tokens.weight"]
    for i in range(config.num_layers):
        p = f"model.layers.{i}."
        kinds = ("weight", "bias") if config.qkv_bias else ("weight",)
        for kind in kinds:
            qkv = [state[p + f"self_attn.{x}_proj.{kind}"] for x in "qkv"]
            yield p + f"attention.wqkv.{kind}", fuse_wqkv(*qkv, config)
        for src, dst in _INTERNLM2_LAYER.items():
            yield p + f"{src}.weight", state[p + f"{dst}.weight"]
    yield "model.norm.weight", state["model.norm.weight"]
    if not config.tie_word_embeddings:
        yield "output.weight", state["lm_head.weight"]
