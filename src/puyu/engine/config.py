"""Engine settings: KV-cache geometry and size, batching limits, numerics and device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from puyu.errors import PuyuError


@dataclass
class EngineConfig:
    """How the engine batches requests and sizes its paged KV cache.

    Args:
        block_size: tokens per KV block.
        num_blocks: KV blocks in the pool; None sizes the pool from `kv_cache_memory`.
        kv_cache_memory: bytes (or "2GB"-style) for the KV cache; "auto": on CUDA most of the free GPU
            memory, on CPU the smaller of 25% of available RAM and what max_num_seqs × max_model_len needs.
        max_num_seqs: most sequences running at once.
        max_num_batched_tokens: most tokens (prefill + decode) in one forward; long prompts are prefilled in chunks.
        max_model_len: longest prompt + output; default the model's max_position_embeddings.
        enable_prefix_caching: reuse KV blocks of identical prompt prefixes across requests.
        kv_cache_dtype: "auto" (the model's dtype) or "int8" (per-token, per-head absmax, dequantized on read).
        dtype: compute dtype for loading ("auto", "float32", "bfloat16", "float16").
        device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1".
        seed: seed of the sampling generator shared by requests without their own seed.
        attention: "auto" (batched SDPA) or "reference" (per-sequence gather + causal_attention).
    """

    block_size: int = 16
    num_blocks: int | None = None
    kv_cache_memory: str | int = "auto"
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 2048
    max_model_len: int | None = None
    enable_prefix_caching: bool = True
    kv_cache_dtype: Literal["auto", "int8"] = "auto"
    dtype: str = "auto"
    device: str = "auto"
    seed: int = 0
    attention: Literal["auto", "reference"] = "auto"

    def __post_init__(self) -> None:
        checks = [
            (self.block_size >= 1, f"block_size must be >= 1, got {self.block_size}"),
            (self.num_blocks is None or self.num_blocks >= 1, f"num_blocks must be >= 1, got {self.num_blocks}"),
            (self.max_num_seqs >= 1, f"max_num_seqs must be >= 1, got {self.max_num_seqs}"),
            (
                self.max_num_batched_tokens >= 1,
                f"max_num_batched_tokens must be >= 1, got {self.max_num_batched_tokens}",
            ),
            (
                self.max_model_len is None or self.max_model_len >= 1,
                f"max_model_len must be >= 1, got {self.max_model_len}",
            ),
            (
                self.kv_cache_dtype in ("auto", "int8"),
                f"kv_cache_dtype must be 'auto' or 'int8', got {self.kv_cache_dtype!r}",
            ),
            (
                self.attention in ("auto", "reference"),
                f"attention must be 'auto' or 'reference', got {self.attention!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise PuyuError(message)
