"""GGUF tensor names ↔ puyu's (HF Llama-layout) names, and llama.cpp's rotary row order.

llama.cpp names tensors `token_embd`, `blk.N.attn_q`, ... for every architecture. For `llama` and
`internlm2` it computes RoPE on adjacent pairs (its "normal" mode), so its converter permutes the rows of
the q and k projections from the HF half-split order into interleaved pairs; `qwen2` uses the half-split
("neox") mode and keeps the rows as they are. Import undoes the permutation, export applies it: both are
reshapes, so the values are untouched.
"""

from __future__ import annotations

import re

import torch

from puyu.model.config import ModelConfig

# Architectures whose q/k rows llama.cpp stores permuted.
PERMUTED_ARCHS = ("llama", "internlm2")

_TOP = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GGUF_LAYER_RE = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")
_HF_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)\.(weight|bias)$")
_HF_TOP = {v: k for k, v in _TOP.items()}
_HF_LAYER = {v: k for k, v in _LAYER.items()}


def to_puyu_name(name: str) -> str | None:
    """The puyu parameter name of a GGUF tensor, or None for a tensor puyu has no place for."""
    if name in _TOP:
        return _TOP[name]
    match = _GGUF_LAYER_RE.match(name)
    if not match or match.group(2) not in _LAYER:
        return None
    layer, module, kind = match.groups()
    return f"model.layers.{layer}.{_LAYER[module]}.{kind}"


def to_gguf_name(name: str) -> str:
    """The GGUF name of a puyu parameter."""
    if name in _HF_TOP:
        return _HF_TOP[name]
    match = _HF_LAYER_RE.match(name)
    if not match or match.group(2) not in _HF_LAYER:
        raise KeyError(name)
    layer, module, kind = match.groups()
    return f"blk.{layer}.{_HF_LAYER[module]}.{kind}"


def _heads_of(name: str, config: ModelConfig) -> int | None:
    if ".self_attn.q_proj." in name:
        return config.num_heads
    if ".self_attn.k_proj." in name:
        return config.num_kv_heads
    return None


def _permute(name: str, tensor: torch.Tensor, config: ModelConfig, arch: str, to_pairs: bool) -> torch.Tensor:
    heads = _heads_of(name, config)
    if heads is None or arch not in PERMUTED_ARCHS:
        return tensor
    # Per head the rows are [2, D/2] (HF half-split) or [D/2, 2] (interleaved pairs): swapping is a transpose.
    halves = (2, tensor.shape[0] // heads // 2)
    split = halves if to_pairs else halves[::-1]
    return tensor.reshape(heads, *split, *tensor.shape[1:]).transpose(1, 2).reshape(tensor.shape)


def to_rotary_pairs(name: str, tensor: torch.Tensor, config: ModelConfig, arch: str) -> torch.Tensor:
    """HF half-split q/k rows → llama.cpp's interleaved pairs (other tensors unchanged)."""
    return _permute(name, tensor, config, arch, to_pairs=True)


def from_rotary_pairs(name: str, tensor: torch.Tensor, config: ModelConfig, arch: str) -> torch.Tensor:
    """Inverse of `to_rotary_pairs`."""
    return _permute(name, tensor, config, arch, to_pairs=False)
