"""InternLM2 for transformers (`trust_remote_code=True`), written by puyu beside the weights.

Self-contained: imports only torch and transformers. The module names are the checkpoint's own
(`model.tok_embeddings`, `attention.wqkv` fused with rows grouped per KV head as [q × G, k, v],
`attention.wo`, `feed_forward.w1`/`w3`/`w2`, `attention_norm`, `ffn_norm`, `model.norm`, `output`),
so the weights load without renaming. Attention runs through `scaled_dot_product_attention` with an
explicit mask, which covers left padding and the KV cache that `generate()` keeps in a `DynamicCache`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

# Newer transformers name the KV cache `cache` (in forward's arguments and in outputs), older ones `past_key_values`.
_CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"

try:
    from .configuration_internlm2 import InternLM2Config
except ImportError:  # imported as a plain module (tests, scripts)
    from configuration_internlm2 import InternLM2Config


class InternLM2RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class InternLM2Rotary(nn.Module):
    """RoPE (rotate-half form) with InternLM2's dynamic-NTK or linear scaling."""

    def __init__(self, config: InternLM2Config) -> None:
        super().__init__()
        scaling = getattr(config, "internlm2_rope_scaling", None) or {}
        self.kind = scaling.get("type", scaling.get("rope_type"))
        self.factor = float(scaling.get("factor", 1.0))
        self.dim = config.head_dim
        self.base = config.rope_theta
        self.max_len = config.max_position_embeddings

    def inverse_frequencies(self, seq_len: int, device: torch.device) -> torch.Tensor:
        base = self.base
        if self.kind == "dynamic" and seq_len > self.max_len:
            # NTK-aware: the base grows once the sequence passes the trained length.
            base = base * ((self.factor * seq_len / self.max_len) - (self.factor - 1)) ** (self.dim / (self.dim - 2))
        inv_freq = 1.0 / (base ** (torch.arange(0, self.dim, 2, dtype=torch.int64, device=device).float() / self.dim))
        return inv_freq / self.factor if self.kind == "linear" else inv_freq

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = self.inverse_frequencies(int(positions.max()) + 1, positions.device)
        freqs = positions[..., None].float() * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + _rotate_half(x) * sin


class InternLM2Attention(nn.Module):
    def __init__(self, config: InternLM2Config, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.groups = self.num_heads // self.num_kv_heads
        self.head_dim = config.head_dim
        self.wqkv = nn.Linear(config.hidden_size, (self.num_heads + 2 * self.num_kv_heads) * self.head_dim, bias=False)
        self.wo = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=False)

    def forward(
        self,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor,
        cache: Cache | None,
    ) -> torch.Tensor:
        batch, length, _ = hidden.shape
        qkv = self.wqkv(hidden).view(batch, length, self.num_kv_heads, self.groups + 2, self.head_dim)
        q = qkv[:, :, :, : self.groups].reshape(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        k = qkv[:, :, :, -2].transpose(1, 2)
        v = qkv[:, :, :, -1].transpose(1, 2)
        q, k = _apply_rotary(q, cos, sin), _apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        k = k.repeat_interleave(self.groups, dim=1)
        v = v.repeat_interleave(self.groups, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.wo(out.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim))


class InternLM2MLP(nn.Module):
    def __init__(self, config: InternLM2Config) -> None:
        super().__init__()
        self.w1 = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)  # gate
        self.w3 = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)  # up
        self.w2 = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)  # down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class InternLM2DecoderLayer(nn.Module):
    def __init__(self, config: InternLM2Config, layer_idx: int) -> None:
        super().__init__()
        self.attention = InternLM2Attention(config, layer_idx)
        self.feed_forward = InternLM2MLP(config)
        self.attention_norm = InternLM2RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.ffn_norm = InternLM2RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, hidden: torch.Tensor, cos, sin, mask, cache) -> torch.Tensor:
        hidden = hidden + self.attention(self.attention_norm(hidden), cos, sin, mask, cache)
        return hidden + self.feed_forward(self.ffn_norm(hidden))


class InternLM2PreTrainedModel(PreTrainedModel):
    config_class = InternLM2Config
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _no_split_modules = ["InternLM2DecoderLayer"]  # noqa: RUF012 - the transformers convention
    _supports_cache_class = True

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, InternLM2RMSNorm):
            nn.init.ones_(module.weight)


def _attention_mask(
    attention_mask: torch.Tensor | None, batch: int, length: int, past: int, device: torch.device
) -> torch.Tensor:
    """Boolean [B, 1, T, past + T]: causal, and padded keys hidden. A fully padded row keeps its own
    position so that softmax never sees a row without keys."""
    total = past + length
    query_pos = torch.arange(past, total, device=device)
    allowed = torch.arange(total, device=device)[None, :] <= query_pos[:, None]
    allowed = allowed[None, None].expand(batch, 1, length, total)
    if attention_mask is not None:
        keys = attention_mask[:, -total:].to(device=device, dtype=torch.bool)
        allowed = allowed & keys[:, None, None, :]
        diagonal = torch.zeros_like(allowed)
        diagonal[..., torch.arange(length), query_pos] = True
        allowed = allowed | (diagonal & ~allowed.any(-1, keepdim=True))
    return allowed


class InternLM2Model(InternLM2PreTrainedModel):
    def __init__(self, config: InternLM2Config) -> None:
        super().__init__(config)
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(InternLM2DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = InternLM2RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary = InternLM2Rotary(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.tok_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.tok_embeddings = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        past_key_values = kwargs.pop("cache", None) or past_key_values
        hidden = self.tok_embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        batch, length, _ = hidden.shape
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache()
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        if position_ids is None:
            if attention_mask is not None:  # left padding: count real tokens
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -length:]
            else:
                position_ids = torch.arange(past, past + length, device=hidden.device)[None].expand(batch, -1)
        position_ids = position_ids.to(hidden.device)
        mask = _attention_mask(attention_mask, batch, length, past, hidden.device)
        cos, sin = self.rotary(position_ids, hidden.dtype)
        for layer in self.layers:
            hidden = layer(hidden, cos, sin, mask, past_key_values if use_cache else None)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(hidden), **{_CACHE_FIELD: past_key_values})


# transformers 5 names the tied pair; 4.x lists the tied parameter and finds its source itself.
_TRANSFORMERS_5 = int(transformers.__version__.split(".")[0]) >= 5


class InternLM2ForCausalLM(InternLM2PreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"output.weight": "model.tok_embeddings.weight"} if _TRANSFORMERS_5 else ["output.weight"]

    def __init__(self, config: InternLM2Config) -> None:
        super().__init__(config)
        self.model = InternLM2Model(config)
        self.vocab_size = config.vocab_size
        self.output = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    # get/set_input_embeddings: transformers' defaults reach `self.model`'s through `base_model_prefix`.

    def get_output_embeddings(self) -> nn.Linear:
        return self.output

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.output = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=kwargs.pop("cache", None) or past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
        )
        hidden = outputs.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.output(hidden).float()
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{_CACHE_FIELD: getattr(outputs, _CACHE_FIELD)})
