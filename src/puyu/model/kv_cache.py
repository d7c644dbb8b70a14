"""The KV-cache interface the decoder calls, and the dense cache used by reference generation.

The decoder never touches cache tensors: each attention layer hands its new keys and values to
`KVCache.attend`, which stores them and returns attention over everything cached. A paged cache
(the serving engine's block tables) implements the same two methods with its own storage and kernel.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F


class KVCache(Protocol):
    """Storage of past keys/values for one forward at a time."""

    def positions(self, num_new: int, device: torch.device) -> torch.Tensor:
        """Positions [B, num_new] of the tokens about to be processed."""
        ...

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        """Store k/v [B, Hkv, T, D] of the new tokens for `layer`; return causal attention of q [B, H, T, D]
        over all cached tokens, shape [B, H, T, D]."""
        ...

    def advance(self, num_new: int) -> None:
        """Called once after all layers have attended: the new tokens are now part of the cache."""
        ...


def causal_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention of q [B, H, T, D] over k/v [B, Hkv, S, D] with GQA, through SDPA.

    Without `mask`, queries are the last T of the S keys (causal, aligned at the end); `mask` (bool,
    True = attend, broadcastable to [B, H, T, S]) replaces that rule, e.g. for padding or packed documents.
    """
    t, s = q.shape[-2], k.shape[-2]
    gqa = q.shape[1] != k.shape[1]
    if mask is None:
        if t == 1:
            return F.scaled_dot_product_attention(q, k, v, scale=scale, enable_gqa=gqa)
        if t == s:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
        mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(diagonal=s - t)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)


class DenseKVCache:
    """Preallocated contiguous cache [B, Hkv, max_len, D] per layer; all rows share one length.

    Args:
        num_layers, num_kv_heads, head_dim: model shape.
        max_len: capacity in tokens.
        batch_size: sequences decoded together.
        dtype, device: storage.
    """

    def __init__(
        self,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        max_len: int,
        batch_size: int = 1,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        shape = (batch_size, num_kv_heads, max_len, head_dim)
        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.length = 0
        self.max_len = max_len

    def positions(self, num_new: int, device: torch.device) -> torch.Tensor:
        if self.length + num_new > self.max_len:
            raise ValueError(f"KV cache full: {self.length} + {num_new} tokens > capacity {self.max_len}")
        batch = self.keys[0].shape[0]
        return torch.arange(self.length, self.length + num_new, device=device).expand(batch, -1)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        end = self.length + k.shape[2]
        self.keys[layer][:, :, self.length : end] = k
        self.values[layer][:, :, self.length : end] = v
        return causal_attention(q, self.keys[layer][:, :, :end], self.values[layer][:, :, :end], scale)

    def advance(self, num_new: int) -> None:
        self.length += num_new

    def truncate(self, length: int) -> None:
        """Forget tokens past `length` (they are overwritten by the next forward)."""
        self.length = min(self.length, length)
