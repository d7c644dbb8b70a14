"""The one decoder behind InternLM2, Llama and Qwen2.

Pre-norm transformer: RMSNorm (computed in fp32) → grouped-query attention with rotary positions
(SDPA) → residual → RMSNorm → SwiGLU MLP → residual; final RMSNorm and an output projection that may
share the embedding's weight. Families differ only in `ModelConfig` values: Qwen2 sets `qkv_bias`,
InternLM2 its rope scaling. Module and parameter names follow the HF Llama layout, so a state dict
of this model *is* a Llama-layout checkpoint; other layouts are mapped in `weight_names`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from puyu.model.config import ModelConfig
from puyu.model.kv_cache import KVCache, causal_attention
from puyu.model.rope import RotaryEmbedding, apply_rotary


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Statistics in fp32 even for bf16 activations: the variance of a 4096-wide row overflows
        # bf16's 8-bit mantissa; cast back before the scale, as the reference implementations do.
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        assert config.head_dim is not None
        self.layer = layer
        self.num_heads, self.num_kv_heads, self.head_dim = (
            config.num_heads,
            config.num_kv_heads,
            config.head_dim,
        )
        self.scale = self.head_dim**-0.5
        d = config.hidden_size
        self.q_proj = nn.Linear(d, self.num_heads * self.head_dim, bias=config.qkv_bias)
        self.k_proj = nn.Linear(d, self.num_kv_heads * self.head_dim, bias=config.qkv_bias)
        self.v_proj = nn.Linear(d, self.num_kv_heads * self.head_dim, bias=config.qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, d, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        cache: KVCache | None,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is None:
            out = causal_attention(q, k, v, self.scale, mask)
        else:
            out = cache.attend(self.layer, q, k, v, self.scale)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        cache: KVCache | None,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope, cache, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class DecoderStack(nn.Module):
    """Embedding, blocks and final norm: the part HF calls `model`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        # Built from an explicit tensor: Embedding's own initialiser, run on the meta device while loading,
        # goes through torch._refs and imports torch._dynamo (~1 s of every fresh load).
        weight = torch.empty(config.vocab_size, config.hidden_size)
        if not weight.is_meta:
            nn.init.normal_(weight)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, _weight=weight)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class CausalLM(nn.Module):
    """A decoder-only language model of any supported family.

    Args:
        config: the model's shape; `config.family` only matters to checkpoint IO.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.model = DecoderStack(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.rotary = RotaryEmbedding(config)
        # Recompute each block's activations in the backward pass instead of storing them (training only).
        self.activation_checkpointing = False
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def tie_weights(self) -> None:
        """Re-point the output matrix at the embedding (after loading with `assign=True`)."""
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        cache: KVCache | None = None,
        mask: torch.Tensor | None = None,
        last_only: bool = False,
        logits_indices: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits for `input_ids` [B, T].

        Args:
            input_ids: token ids [B, T].
            positions: rotary positions [B, T]; default: from the cache, else 0..T-1.
            cache: KV cache to read and extend; None for a full causal forward.
            mask: bool attention mask broadcastable to [B, H, T, T] (True = attend), without a cache:
                padding or packed-document masks. None = plain causal.
            last_only: project only the last position (decoding needs nothing else).
            logits_indices: project only these positions [R] (a batch engine flattens several sequences into
                one row and needs each one's last position); overrides `last_only`.
            inputs_embeds: input embeddings [B, T, hidden] to use instead of looking up `input_ids` (a vision
                model's prompt, with image embeddings at its placeholders); `input_ids` still give the shape.

        Returns:
            logits [B, T, vocab] (or [B, 1, vocab] with `last_only`, [B, R, vocab] with `logits_indices`), in the
            model's dtype.
        """
        b, t = input_ids.shape
        if positions is None:
            if cache is not None:
                positions = cache.positions(t, input_ids.device)
            else:
                positions = torch.arange(t, device=input_ids.device).expand(b, -1)
        x = self.model.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        rope = self.rotary(positions, x.dtype)
        for layer in self.model.layers:
            if self.activation_checkpointing and self.training and cache is None:
                x = torch.utils.checkpoint.checkpoint(layer, x, rope, None, mask, use_reentrant=False)
            else:
                x = layer(x, rope, cache, mask)
        if cache is not None:
            cache.advance(t)
        if logits_indices is not None:
            x = x[:, logits_indices]
        elif last_only:
            x = x[:, -1:]
        return self.lm_head(self.model.norm(x))

    # Read off the final norm: the embedding may be wrapped (trainable token rows) and hold no plain weight.
    @property
    def device(self) -> torch.device:
        return self.model.norm.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.norm.weight.dtype


def hidden_states(
    model: CausalLM, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """The final-norm hidden states [B, T, D] without the output projection (scoring heads, and log-likelihoods
    that project only the positions they need)."""
    x = model.model.embed_tokens(ids)
    rope = model.rotary(positions, x.dtype)
    for layer in model.model.layers:
        x = layer(x, rope, None, mask)
    return model.model.norm(x)
