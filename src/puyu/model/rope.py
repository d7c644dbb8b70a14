"""Rotary position embeddings with the scalings InternLM2, Llama-3 and transformers apply.

The rotation is the "rotate-half" form that HF-format InternLM2, Llama and Qwen2 checkpoints use
(not the interleaved form of Meta's original code): dims [0, d/2) pair with [d/2, d).
"""

from __future__ import annotations

import math

import torch

from puyu.model.config import ModelConfig


def inverse_frequencies(config: ModelConfig, seq_len: int | None = None) -> torch.Tensor:
    """Per-pair rotation frequencies (fp32, length head_dim // 2).

    Args:
        config: model shape and rope settings.
        seq_len: tokens in the sequence so far (largest position + 1); only dynamic-NTK scaling uses it,
            growing the base once the sequence passes `max_position_embeddings`.
    """
    dim = config.head_dim or 0
    base = config.rope_theta
    scaling = config.rope_scaling
    if scaling is not None and scaling.type == "dynamic":
        # NTK-aware: base grows with the sequence beyond the trained length (InternLM2's
        # DynamicNTKScalingRotaryEmbedding and transformers' "dynamic" rope use this same formula).
        max_len = config.max_position_embeddings
        length = max(seq_len or max_len, max_len)
        base = base * ((scaling.factor * length / max_len) - (scaling.factor - 1)) ** (dim / (dim - 2))
    # Always on the CPU: under a meta-device context these ops would go through torch._refs (slow import).
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").float() / dim))
    if scaling is None or scaling.type == "dynamic":
        return inv_freq
    if scaling.type == "linear":
        return inv_freq / scaling.factor
    # llama3: leave high frequencies, divide low ones by the factor, interpolate smoothly in between.
    assert scaling.original_max_position_embeddings and scaling.low_freq_factor and scaling.high_freq_factor
    old_len = scaling.original_max_position_embeddings
    low_wavelen = old_len / scaling.low_freq_factor
    high_wavelen = old_len / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (old_len / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


class RotaryEmbedding(torch.nn.Module):
    """Computes cos/sin for given positions; caches the static frequency table.

    Frequencies are recomputed per call only under dynamic-NTK scaling past the trained length, where
    they depend on the sequence length (largest position + 1 in the call).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.dynamic = config.rope_scaling is not None and config.rope_scaling.type == "dynamic"
        self.register_buffer("inv_freq", inverse_frequencies(config), persistent=False)

    def materialize(self, device: torch.device) -> None:
        """Recompute the frequency table on `device` (after building the model on the meta device)."""
        self.inv_freq = inverse_frequencies(self.config).to(device)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape positions.shape + (head_dim,), in `dtype`."""
        inv_freq = self.inv_freq
        if self.dynamic:
            seq_len = int(positions.max()) + 1
            if seq_len > self.config.max_position_embeddings:
                inv_freq = inverse_frequencies(self.config, seq_len).to(positions.device)
        freqs = positions[..., None].float() * inv_freq.float()
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, H, T, D] by cos/sin [B, T, D]."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + rotate_half(x) * sin
