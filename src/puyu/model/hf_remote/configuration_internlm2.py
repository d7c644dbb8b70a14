"""InternLM2 configuration for transformers (`trust_remote_code=True`), written by puyu beside the weights.

Self-contained: imports only transformers. Field names and defaults follow the released InternLM2 folders.
"""

from __future__ import annotations

from typing import Any

try:  # transformers 5 renamed the base class and kept the old name as an alias
    from transformers import PreTrainedConfig as _BaseConfig
except ImportError:  # transformers 4.x
    from transformers import PretrainedConfig as _BaseConfig


class InternLM2Config(_BaseConfig):
    """Shape and numerics of an InternLM2 decoder (fused `wqkv`, `w1`/`w3`/`w2` SwiGLU, RMSNorm, RoPE)."""

    model_type = "internlm2"
    keys_to_ignore_at_inference = ["past_key_values"]  # noqa: RUF012 - the transformers convention

    def __init__(
        self,
        vocab_size: int = 103168,
        hidden_size: int = 4096,
        intermediate_size: int = 11008,
        num_hidden_layers: int = 32,
        num_attention_heads: int = 32,
        num_key_value_heads: int | None = None,
        head_dim: int | None = None,
        hidden_act: str = "silu",
        max_position_embeddings: int = 2048,
        initializer_range: float = 0.02,
        rms_norm_eps: float = 1e-6,
        use_cache: bool = True,
        pad_token_id: int | None = 0,
        bos_token_id: int | None = 1,
        eos_token_id: int | list[int] | None = 2,
        tie_word_embeddings: bool = False,
        bias: bool = False,
        rope_theta: float = 10000.0,
        rope_scaling: dict[str, Any] | None = None,
        attn_implementation: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads or num_attention_heads
        self.head_dim = head_dim or hidden_size // num_attention_heads
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.use_cache = use_cache
        self.bias = bias
        self.rope_theta = rope_theta
        # Kept under its own name: transformers 5 rewrites a `rope_scaling` key into `rope_parameters`.
        self.internlm2_rope_scaling = dict(rope_scaling) if rope_scaling else None
        self.rope_scaling = rope_scaling
        if bias:
            raise ValueError("this InternLM2 code supports bias=false only (no released checkpoint sets it)")
        if rope_scaling and rope_scaling.get("type", rope_scaling.get("rope_type")) not in ("dynamic", "linear"):
            raise ValueError(f"rope_scaling {rope_scaling!r}: type must be 'dynamic' or 'linear'")
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
