"""InternViT, pixel shuffle and the MLP projector: image tiles in, language-model embeddings out.

InternViT is a pre-norm ViT: patch convolution + CLS token + learned absolute positions, then blocks of
x + λ₁·attn(norm(x)) and x + λ₂·mlp(norm(x)) (layer scale λ per channel). The CLS output is dropped, the
patch grid is folded 2×2 into the channels (pixel shuffle, as InternVL's `ps_version` v2), and a
LayerNorm → Linear → GELU → Linear projector maps each folded token to the text model's width.
Module and parameter names follow transformers' `InternVLModel` (`vision_tower`, `multi_modal_projector`),
so the HF-native checkpoint maps by a prefix; the original layout is renamed in `weights`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from puyu.model.decoder import RMSNorm
from puyu.model.vision.config import VisionConfig, VLMConfig

_ACTIVATIONS = {
    "gelu": nn.GELU,
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "gelu_new": lambda: nn.GELU(approximate="tanh"),
}


def _norm(config: VisionConfig, dim: int) -> nn.Module:
    if config.norm_type == "rms_norm":
        return RMSNorm(dim, config.layer_norm_eps)
    return nn.LayerNorm(dim, eps=config.layer_norm_eps)


class PatchEmbeddings(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.projection = nn.Conv2d(3, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.projection(pixels).flatten(2).transpose(1, 2)


class VisionEmbeddings(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.patch_embeddings = PatchEmbeddings(config)
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.num_patches + 1, config.hidden_size))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embeddings(pixels.to(self.cls_token.dtype))
        tokens = torch.cat([self.cls_token.expand(patches.shape[0], -1, -1), patches], dim=1)
        return tokens + self.position_embeddings


class VisionAttention(nn.Module):
    """Bidirectional multi-head attention over one tile's tokens (SDPA)."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.num_heads = config.num_heads
        self.q_proj = nn.Linear(d, d, bias=config.qkv_bias)
        self.k_proj = nn.Linear(d, d, bias=config.qkv_bias)
        self.v_proj = nn.Linear(d, d, bias=config.qkv_bias)
        self.projection_layer = nn.Linear(d, d)
        # InternViT-6B normalises the whole query/key vector (all heads together), before the head split.
        self.q_norm: nn.Module = RMSNorm(d, config.layer_norm_eps) if config.qk_norm else nn.Identity()
        self.k_norm: nn.Module = RMSNorm(d, config.layer_norm_eps) if config.qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        heads = (b, t, self.num_heads, d // self.num_heads)
        q = self.q_norm(self.q_proj(x)).view(heads).transpose(1, 2)
        k = self.k_norm(self.k_proj(x)).view(heads).transpose(1, 2)
        v = self.v_proj(x).view(heads).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.projection_layer(out.transpose(1, 2).reshape(b, t, d))


class VisionMLP(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = _ACTIVATIONS[config.hidden_act]()
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class VisionLayer(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.layernorm_before = _norm(config, config.hidden_size)
        self.attention = VisionAttention(config)
        self.layernorm_after = _norm(config, config.hidden_size)
        self.mlp = VisionMLP(config)
        self.lambda_1 = nn.Parameter(torch.full((config.hidden_size,), config.layer_scale_init))
        self.lambda_2 = nn.Parameter(torch.full((config.hidden_size,), config.layer_scale_init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.lambda_1 * self.attention(self.layernorm_before(x))
        return x + self.lambda_2 * self.mlp(self.layernorm_after(x))


class VisionEncoder(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(VisionLayer(config) for _ in range(config.num_layers))


class InternViT(nn.Module):
    """The vision tower.

    Args:
        config: its shape.
    """

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = VisionEmbeddings(config)
        self.encoder = VisionEncoder(config)
        self.layernorm: nn.Module = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.final_norm else nn.Identity()
        )

    def forward(self, pixels: torch.Tensor, feature_layer: int = -1) -> torch.Tensor:
        """Token states [N, 1 + patches, D] of tiles [N, 3, S, S] after the encoder layer `feature_layer`
        (negative, as HF counts `hidden_states`: -1 is the final output, after the final norm if any)."""
        x = self.embeddings(pixels)
        depth = len(self.encoder.layer) + 1 + feature_layer
        for layer in self.encoder.layer[:depth]:
            x = layer(x)
        return self.layernorm(x) if feature_layer == -1 else x


def pixel_shuffle(features: torch.Tensor, factor: int) -> torch.Tensor:
    """Fold `factor`×`factor` neighbouring patches into one token: [N, G, G, C] → [N, G/f, G/f, C·f²].

    The element order is InternVL's (`ps_version` v2): it decides which weight row of the projector reads
    which patch, so it must match the checkpoint exactly.
    """
    n, w, h, c = features.shape
    x = features.reshape(n, w, h // factor, c * factor).permute(0, 2, 1, 3)
    x = x.reshape(n, h // factor, w // factor, c * factor * factor)
    return x.permute(0, 2, 1, 3).contiguous()


class Projector(nn.Module):
    """LayerNorm → Linear → GELU → Linear, from folded vision tokens to the text width (`mlp1` originally)."""

    def __init__(self, config: VLMConfig) -> None:
        super().__init__()
        folded = config.vision.hidden_size * config.shuffle**2
        width = config.text.hidden_size
        self.layer_norm = nn.LayerNorm(folded)
        self.linear_1 = nn.Linear(folded, width)
        self.act = _ACTIVATIONS[config.projector_act]()
        self.linear_2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(self.layer_norm(x))))


class ImageEncoder(nn.Module):
    """Vision tower + pixel shuffle + projector: tiles [N, 3, S, S] → embeddings [N, tokens_per_tile, width].

    Args:
        config: the InternVL shape.
    """

    def __init__(self, config: VLMConfig) -> None:
        super().__init__()
        self.config = config
        self.vision_tower = InternViT(config.vision)
        self.multi_modal_projector = Projector(config)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        states = self.vision_tower(pixels, self.config.vision_feature_layer)[:, 1:]
        grid = self.config.vision.grid
        folded = pixel_shuffle(states.reshape(states.shape[0], grid, grid, -1), self.config.shuffle)
        return self.multi_modal_projector(folded.reshape(folded.shape[0], -1, folded.shape[-1]))

    @property
    def dtype(self) -> torch.dtype:
        return self.multi_modal_projector.linear_2.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.multi_modal_projector.linear_2.weight.device
