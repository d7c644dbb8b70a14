"""The paged KV cache: per-layer block tensors and the `KVCache` the decoder calls during one step.

Storage per layer is [num_blocks, block_size, Hkv, D] (token-major, as vLLM's flash layout): gathering a
sequence's blocks is then one `index_select` whose result views as [Hkv, L, D] without a second copy,
about 3x faster than the head-major [num_blocks, Hkv, block_size, D] on CPU. A step's tokens from all
sequences are one flattened row; `attend` writes each token's key/value into its slot (block table entry,
offset) and then computes attention per sequence. Two paths compute the same thing:

- "reference": per sequence, gather its blocks into a contiguous [Hkv, L, D] and call `causal_attention`;
- "auto": decoding sequences (one new token each) in one padded SDPA call with a length mask, and prefill
  chunks per sequence, straight from the new keys/values when the chunk starts the sequence.

With `kv_dtype="int8"` keys/values are stored as int8 with one absmax scale per token and head and
dequantized when gathered.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from puyu.model.kv_cache import causal_attention


class PagedKVPool:
    """The block tensors of every layer.

    Args:
        num_layers, num_kv_heads, head_dim: model shape.
        num_blocks, block_size: pool geometry.
        dtype: compute dtype (storage dtype too, unless `kv_dtype` is "int8").
        device: where the blocks live.
        kv_dtype: "auto" or "int8".
    """

    def __init__(
        self,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        num_blocks: int,
        block_size: int,
        dtype: torch.dtype,
        device: torch.device,
        kv_dtype: str = "auto",
    ) -> None:
        self.block_size = block_size
        self.dtype = dtype
        self.quantized = kv_dtype == "int8"
        shape = (num_blocks, block_size, num_kv_heads, head_dim)
        store = torch.int8 if self.quantized else dtype
        self.keys = [torch.zeros(shape, dtype=store, device=device) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=store, device=device) for _ in range(num_layers)]
        self.key_scales: list[torch.Tensor] = []
        self.value_scales: list[torch.Tensor] = []
        if self.quantized:
            self.key_scales = [torch.zeros(shape[:-1], device=device) for _ in range(num_layers)]
            self.value_scales = [torch.zeros(shape[:-1], device=device) for _ in range(num_layers)]

    @staticmethod
    def bytes_per_block(
        num_layers: int, num_kv_heads: int, head_dim: int, block_size: int, dtype: torch.dtype, kv_dtype: str
    ) -> int:
        element = 1 if kv_dtype == "int8" else torch.empty(0, dtype=dtype).element_size()
        scales = 2 * 4 * num_kv_heads * block_size if kv_dtype == "int8" else 0
        return num_layers * (2 * num_kv_heads * block_size * head_dim * element + scales)

    def write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k/v [N, Hkv, D] of N tokens at flat slots (block * block_size + offset)."""
        # index_copy_ on the flattened pool: advanced-index assignment (pool[blocks, offsets] = k) was ~1000x
        # slower on CPU.
        if self.quantized:
            k, k_scale = _quantize(k)
            v, v_scale = _quantize(v)
            self.key_scales[layer].view(-1, k.shape[1]).index_copy_(0, slots, k_scale)
            self.value_scales[layer].view(-1, v.shape[1]).index_copy_(0, slots, v_scale)
        self.keys[layer].view(-1, *k.shape[1:]).index_copy_(0, slots, k.to(self.keys[layer].dtype))
        self.values[layer].view(-1, *v.shape[1:]).index_copy_(0, slots, v.to(self.values[layer].dtype))

    def gather(self, layer: int, tables: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of block tables [B, nb] as [B, Hkv, nb * block_size, D] views in the compute dtype."""
        b, nb = tables.shape
        flat = tables.reshape(-1)
        out = []
        for store, scales in ((self.keys, self.key_scales), (self.values, self.value_scales)):
            x = store[layer].index_select(0, flat)  # [B * nb, bs, Hkv, D]
            if self.quantized:
                x = x.to(self.dtype) * scales[layer].index_select(0, flat).unsqueeze(-1).to(self.dtype)
            out.append(x.view(b, nb * self.block_size, x.shape[-2], x.shape[-1]).transpose(1, 2))
        return out[0], out[1]


def _quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 over the last dim: x ≈ q * scale, one scale per token and head."""
    scale = x.float().abs().amax(dim=-1).clamp(min=1e-8) / 127.0
    q = torch.round(x.float() / scale.unsqueeze(-1)).clamp(-127, 127).to(torch.int8)
    return q, scale


@dataclass
class SeqSpan:
    """One sequence's part of the step: tokens [offset, offset + length) of the flattened row, at
    positions [start, start + length); its block table covers `start + length` tokens."""

    offset: int
    length: int
    start: int
    blocks: torch.Tensor  # [num blocks covering the context] long

    @property
    def context(self) -> int:
        return self.start + self.length


class PagedKVCache:
    """`KVCache` over a `PagedKVPool` for one forward of a flattened batch.

    Args:
        pool: the block storage.
        spans: each sequence's tokens in the row.
        positions: [1, N] positions of the row's tokens.
        slots: [N] where each token's key/value goes (block * block_size + offset).
        mode: "auto" (batched decode SDPA) or "reference".
    """

    def __init__(
        self,
        pool: PagedKVPool,
        spans: list[SeqSpan],
        positions: torch.Tensor,
        slots: torch.Tensor,
        mode: str = "auto",
    ) -> None:
        self.pool = pool
        self.spans = spans
        self._positions = positions
        self.slots = slots
        self.mode = mode
        device = positions.device
        self._decode: list[SeqSpan] = []
        self._prefill = list(spans)
        if mode == "auto":
            self._decode = [s for s in spans if s.length == 1]
            self._prefill = [s for s in spans if s.length > 1]
        if self._decode:
            width = max(len(s.blocks) for s in self._decode)
            offsets = [s.offset for s in self._decode]
            # The runner puts decoding sequences first, so their rows are usually a slice (no gather/scatter).
            self._decode_rows: slice | torch.Tensor = (
                slice(0, len(offsets)) if offsets == list(range(len(offsets))) else torch.tensor(offsets, device=device)
            )
            self._decode_tables = torch.stack([F.pad(s.blocks, (0, width - len(s.blocks))) for s in self._decode])
            lengths = torch.tensor([s.context for s in self._decode], device=device)
            keys = torch.arange(width * pool.block_size, device=device)
            self._decode_mask = (keys[None, :] < lengths[:, None])[:, None, None, :]  # [B, 1, 1, S]

    def positions(self, num_new: int, device: torch.device) -> torch.Tensor:
        return self._positions

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        self.pool.write(layer, self.slots, k[0].transpose(0, 1), v[0].transpose(0, 1))
        out = torch.empty_like(q)
        gqa = q.shape[1] != k.shape[1]
        if self._decode:
            keys, values = self.pool.gather(layer, self._decode_tables)
            rows = q[0][:, self._decode_rows].transpose(0, 1).unsqueeze(2)  # [B, H, 1, D]
            attended = F.scaled_dot_product_attention(
                rows, keys, values, attn_mask=self._decode_mask, scale=scale, enable_gqa=gqa
            )
            out[0][:, self._decode_rows] = attended.squeeze(2).transpose(0, 1)
        for span in self._prefill:
            end = span.offset + span.length
            query = q[:, :, span.offset : end]
            if span.start == 0 and self.mode == "auto" and not self.pool.quantized:
                keys, values = k[:, :, span.offset : end], v[:, :, span.offset : end]
            else:
                keys, values = self.pool.gather(layer, span.blocks[None])
                keys, values = keys[:, :, : span.context], values[:, :, : span.context]
            out[:, :, span.offset : end] = causal_attention(query, keys, values, scale)
        return out

    def advance(self, num_new: int) -> None:
        """Nothing to do: the engine advances each sequence's computed-token count after the step."""
