"""Tensor names of the two InternVL checkpoint layouts, mapped to and from puyu's `VisionLanguageModel`.

puyu's names: `encoder.vision_tower.*`, `encoder.multi_modal_projector.*` and `language_model.*` (a
`CausalLM`). The HF-native layout differs by prefixes only. The original
layout (`InternVLChatModel`) renames the ViT's modules, fuses q/k/v into `attn.qkv` (rows [q; k; v]),
calls the projector `mlp1` (an `nn.Sequential`: 0 norm, 1 linear, 2 GELU, 3 linear) and stores the text
model under `language_model.` in its own family's names (InternLM2's fused `wqkv` included). Every
conversion is a rename or an exact split/concatenation, so both directions are bit-exact.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import torch

from puyu.model.vision.config import Layout, VLMConfig
from puyu.model.weight_names import from_internal as text_from_internal
from puyu.model.weight_names import to_internal as text_to_internal

VISION = "encoder.vision_tower."
PROJECTOR = "encoder.multi_modal_projector."
TEXT = "language_model."

# Original ViT names → puyu's (per layer, after `encoder.layers.{i}.` / `encoder.layer.{i}.`).
_ORIGINAL_LAYER = {
    "attn.proj": "attention.projection_layer",
    "attn.q_norm": "attention.q_norm",
    "attn.k_norm": "attention.k_norm",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
}
_ORIGINAL_EMBEDDINGS = {
    "embeddings.class_embedding": "embeddings.cls_token",
    "embeddings.position_embedding": "embeddings.position_embeddings",
    "embeddings.patch_embedding.weight": "embeddings.patch_embeddings.projection.weight",
    "embeddings.patch_embedding.bias": "embeddings.patch_embeddings.projection.bias",
}
_ORIGINAL_PROJECTOR = {"mlp1.0": "layer_norm", "mlp1.1": "linear_1", "mlp1.3": "linear_2"}
_ORIGINAL_LAYER_RE = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.(.+?)(?:\.(weight|bias))?$")


# HF-native names, as transformers writes them (`vision_tower.*`, `language_model.model.*`), and the
# `model.`-prefixed spelling of the module tree, which transformers also reads: both load.
_HF_PREFIXES = (
    ("vision_tower.", VISION),
    ("model.vision_tower.", VISION),
    ("multi_modal_projector.", PROJECTOR),
    ("model.multi_modal_projector.", PROJECTOR),
    ("language_model.", TEXT),
    ("model.language_model.", TEXT + "model."),
    ("lm_head.", TEXT + "lm_head."),
)


def _hf_to_internal(name: str, tensor: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    for prefix, internal in _HF_PREFIXES:
        if name.startswith(prefix):
            return [(internal + name.removeprefix(prefix), tensor)]
    return []


def to_internal(name: str, tensor: torch.Tensor, config: VLMConfig, layout: Layout) -> list[tuple[str, torch.Tensor]]:
    """One checkpoint tensor → puyu (name, tensor) pairs; [] for a name this layout does not know."""
    if layout == "hf":
        return _hf_to_internal(name, tensor)
    if name.startswith("language_model."):
        inner = text_to_internal(name.removeprefix("language_model."), tensor, config.text)
        return [(TEXT + n, t) for n, t in inner]
    if name.startswith("mlp1."):
        module, _, kind = name.rpartition(".")
        return [(PROJECTOR + f"{_ORIGINAL_PROJECTOR[module]}.{kind}", tensor)] if module in _ORIGINAL_PROJECTOR else []
    if not name.startswith("vision_model."):
        return []
    short = name.removeprefix("vision_model.")
    if short in _ORIGINAL_EMBEDDINGS:
        return [(VISION + _ORIGINAL_EMBEDDINGS[short], tensor)]
    match = _ORIGINAL_LAYER_RE.match(name)
    if not match:
        return []
    layer, module, kind = match.groups()
    prefix = VISION + f"encoder.layer.{layer}."
    if module == "attn.qkv" and kind:
        q, k, v = tensor.chunk(3, dim=0)
        return [(prefix + f"attention.{x}_proj.{kind}", t.contiguous()) for x, t in zip("qkv", (q, k, v), strict=True)]
    if module in ("ls1", "ls2") and kind is None:
        return [(prefix + ("lambda_1" if module == "ls1" else "lambda_2"), tensor)]
    if module in _ORIGINAL_LAYER and kind:
        return [(prefix + f"{_ORIGINAL_LAYER[module]}.{kind}", tensor)]
    return []


def from_internal(
    state: dict[str, torch.Tensor], config: VLMConfig, layout: Layout
) -> Iterator[tuple[str, torch.Tensor]]:
    """puyu's state dict → (checkpoint name, tensor) in `layout`."""
    text_state = {k.removeprefix(TEXT): v for k, v in state.items() if k.startswith(TEXT)}
    if layout == "hf":
        for name, tensor in state.items():
            if name.startswith(VISION):
                yield "vision_tower." + name.removeprefix(VISION), tensor
            elif name.startswith(PROJECTOR):
                yield "multi_modal_projector." + name.removeprefix(PROJECTOR), tensor
        for name, tensor in text_from_internal(text_state, config.text, config.text.family):
            yield TEXT + name, tensor
        return
    inverse_embeddings = {v: k for k, v in _ORIGINAL_EMBEDDINGS.items()}
    inverse_layer = {v: k for k, v in _ORIGINAL_LAYER.items()}
    inverse_projector = {v: k for k, v in _ORIGINAL_PROJECTOR.items()}
    for name, tensor in state.items():
        if name.startswith(PROJECTOR):
            module, _, kind = name.removeprefix(PROJECTOR).rpartition(".")
            yield f"{inverse_projector[module]}.{kind}", tensor
            continue
        if not name.startswith(VISION):
            continue
        short = name.removeprefix(VISION)
        if short in inverse_embeddings:
            yield "vision_model." + inverse_embeddings[short], tensor
            continue
        match = re.match(r"^encoder\.layer\.(\d+)\.(.+?)(?:\.(weight|bias))?$", short)
        if not match:
            continue  # the final norm, which the original layout lacks (refused by its config writer)
        layer, module, kind = match.groups()
        prefix = f"vision_model.encoder.layers.{layer}."
        if module == "attention.q_proj":
            base = VISION + f"encoder.layer.{layer}.attention."
            qkv = [state[base + f"{x}_proj.{kind}"] for x in "qkv"]
            yield prefix + f"attn.qkv.{kind}", torch.cat(qkv, dim=0)
        elif module in ("attention.k_proj", "attention.v_proj"):
            continue
        elif module in ("lambda_1", "lambda_2"):
            yield prefix + ("ls1" if module == "lambda_1" else "ls2"), tensor
        else:
            yield prefix + f"{inverse_layer[module]}.{kind}", tensor
    for name, tensor in text_from_internal(text_state, config.text, config.text.family):
        yield "language_model." + name, tensor
