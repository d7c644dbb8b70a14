"""VisionConfig and VLMConfig: the shape of an InternVL model, read from and written to both folder layouts.

Two `config.json` layouts exist for one architecture:
- HF-native (`model_type: internvl`, `InternVLForConditionalGeneration`): `vision_config` + `text_config`
  (Llama or Qwen2), `image_token_id`, `downsample_ratio`, `vision_feature_layer`.
- original (`model_type: internvl_chat`, `InternVLChatModel`, remote code): `vision_config` with its own key
  names (`qkv_bias`, `qk_normalization`), `llm_config` (InternLM2, Qwen2 or Llama), `select_layer`,
  `template`, `dynamic_image_size`, `max_dynamic_patch`, `use_thumbnail`.
Both map onto the same two dataclasses; the text model is a plain `ModelConfig`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from puyu.errors import PuyuError
from puyu.model.config import ModelConfig

Layout = Literal["hf", "original"]
LAYOUTS: tuple[str, ...] = ("hf", "original")
HF_ARCHITECTURE = "InternVLForConditionalGeneration"
ORIGINAL_ARCHITECTURE = "InternVLChatModel"

# The tokens the original InternVL tokenizers add (the HF releases keep the same strings).
IMAGE_START, IMAGE_END, IMAGE_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"


@dataclass
class VisionConfig:
    """InternViT: a pre-norm ViT with layer scale, a CLS token and learned absolute positions.

    Args:
        hidden_size, intermediate_size, num_layers, num_heads: encoder shape.
        image_size: tile side in pixels (448 for InternVL2).
        patch_size: patch side in pixels (14).
        qkv_bias: bias on the q/k/v projections.
        qk_norm: RMSNorm over the full query and key vectors (InternViT-6B).
        norm_type: "layer_norm" or "rms_norm".
        layer_norm_eps: epsilon of the block norms.
        hidden_act: MLP activation (gelu).
        layer_scale_init: initial layer-scale value (only used for random initialisation).
        final_norm: a LayerNorm after the last block (HF's `use_mean_pooling=false`; the original has none).
    """

    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_layers: int = 24
    num_heads: int = 16
    image_size: int = 448
    patch_size: int = 14
    qkv_bias: bool = True
    qk_norm: bool = False
    norm_type: str = "layer_norm"
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu"
    layer_scale_init: float = 0.1
    final_norm: bool = False

    def __post_init__(self) -> None:
        if self.norm_type not in ("layer_norm", "rms_norm"):
            raise PuyuError(f"vision_config: norm_type {self.norm_type!r} is not supported (layer_norm, rms_norm)")
        if self.hidden_size % self.num_heads:
            raise PuyuError(f"vision_config: hidden_size {self.hidden_size} is not divisible by {self.num_heads} heads")
        if self.image_size % self.patch_size:
            raise PuyuError(f"vision_config: image_size {self.image_size} is not a multiple of {self.patch_size}")
        if self.hidden_act not in ("gelu", "gelu_pytorch_tanh", "gelu_new"):
            raise PuyuError(f"vision_config: hidden_act {self.hidden_act!r} is not supported")

    @property
    def grid(self) -> int:
        """Patches along one side of a tile."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid**2


@dataclass
class VLMConfig:
    """An InternVL model: vision encoder → pixel shuffle → MLP projector → language model.

    Args:
        vision: the InternViT shape.
        text: the language model's shape (any puyu family).
        downsample_ratio: pixel-shuffle factor (0.5: 2×2 patches become one token of 4× the width).
        vision_feature_layer: which encoder layer's output feeds the projector (-1 = last).
        projector_act: activation between the projector's two linear layers.
        image_token_id: id of `<IMG_CONTEXT>`; None where the folder's config does not say (original layout:
            taken from the tokenizer).
        min_tiles, max_tiles, use_thumbnail, dynamic_tiles: dynamic-resolution tiling defaults.
        template: the original layout's chat template name (e.g. "internlm2-chat"), kept for saving.
        layout: the layout the folder was read from.
    """

    vision: VisionConfig
    text: ModelConfig
    downsample_ratio: float = 0.5
    vision_feature_layer: int = -1
    projector_act: str = "gelu"
    image_token_id: int | None = None
    min_tiles: int = 1
    max_tiles: int = 12
    use_thumbnail: bool = True
    dynamic_tiles: bool = True
    template: str | None = None
    layout: Layout = "hf"
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        shrink = round(1 / self.downsample_ratio)
        if abs(shrink * self.downsample_ratio - 1) > 1e-9 or self.vision.grid % shrink:
            raise PuyuError(
                f"downsample_ratio {self.downsample_ratio} does not divide the {self.vision.grid}-patch grid"
            )
        if not -self.vision.num_layers <= self.vision_feature_layer < 0:
            raise PuyuError(f"vision_feature_layer {self.vision_feature_layer}: use a negative layer index")

    @property
    def shuffle(self) -> int:
        """Patches merged along each side by the pixel shuffle (2 for a ratio of 0.5)."""
        return round(1 / self.downsample_ratio)

    @property
    def tokens_per_tile(self) -> int:
        """Image-context tokens one tile becomes (256 for 448-pixel tiles of 14-pixel patches at 0.5)."""
        return (self.vision.grid // self.shuffle) ** 2

    def replace(self, **changes: Any) -> VLMConfig:
        return dataclasses.replace(self, **changes)

    # ---- config.json ----------------------------------------------------------------------------

    @classmethod
    def from_hf(cls, raw: dict[str, Any], source: str = "config.json") -> VLMConfig:
        """Build from a parsed `config.json` of either layout."""
        archs = raw.get("architectures") or []
        try:
            if raw.get("model_type") == "internvl_chat" or ORIGINAL_ARCHITECTURE in archs:
                return _from_original(raw, source)
            if raw.get("model_type") == "internvl" or HF_ARCHITECTURE in archs:
                return _from_native(raw, source)
        except (KeyError, TypeError, ValueError) as bad:
            raise PuyuError(f"{source}: malformed InternVL config ({type(bad).__name__}: {bad})") from None
        raise PuyuError(f"{source}: not an InternVL config (model_type {raw.get('model_type')!r})")

    def to_hf(self, layout: Layout | None = None) -> dict[str, Any]:
        """The `config.json` dict in `layout` (default: the layout it was read from)."""
        layout = layout or self.layout
        if layout == "original":
            return _to_original(self)
        return _to_native(self)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str]) -> VLMConfig:
        file = Path(path) / "config.json"
        return cls.from_hf(read_json_object(file), str(file))


def read_json_object(file: Path) -> dict[str, Any]:
    """A JSON file that must hold an object (config.json, preprocessor_config.json); PuyuError otherwise."""
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PuyuError(f"{file}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as bad:
        raise PuyuError(f"{file}: not valid JSON ({bad})") from None
    if not isinstance(raw, dict):
        raise PuyuError(f"{file}: expected a JSON object")
    return raw


def is_vlm_config(raw: dict[str, Any]) -> bool:
    """Whether a parsed config.json describes an InternVL model (either layout)."""
    archs = raw.get("architectures") or []
    return raw.get("model_type") in ("internvl", "internvl_chat") or bool(
        {HF_ARCHITECTURE, ORIGINAL_ARCHITECTURE} & set(archs)
    )


def is_vlm_folder(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a model folder holding an InternVL config."""
    file = Path(path) / "config.json"
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(raw, dict) and is_vlm_config(raw)


def _pair(value: Any) -> int:
    """HF writes sizes as [h, w]; only square tiles and patches are supported."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"non-square size {value!r}")
        return int(value[0])
    return int(value)


def _text_config(raw: dict[str, Any], source: str, outer: dict[str, Any]) -> ModelConfig:
    raw = dict(raw)
    # The storage dtype is recorded at the top level; the text part's own entry may be absent or stale.
    stored = outer.get("torch_dtype") or outer.get("dtype")
    if isinstance(stored, str):
        raw["torch_dtype"] = stored
    if not raw.get("architectures"):
        arch = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM", "internlm2": "InternLM2ForCausalLM"}.get(
            raw.get("model_type", "")
        )
        if arch is None:
            raise PuyuError(f"{source}: text model type {raw.get('model_type')!r} is not supported")
        raw["architectures"] = [arch]
    return ModelConfig.from_hf(raw, f"{source} (text model)")


def _from_native(raw: dict[str, Any], source: str) -> VLMConfig:
    v = raw.get("vision_config") or {}
    vision = VisionConfig(
        hidden_size=int(v.get("hidden_size", 1024)),
        intermediate_size=int(v.get("intermediate_size", 4096)),
        num_layers=int(v.get("num_hidden_layers", 24)),
        num_heads=int(v.get("num_attention_heads", 16)),
        image_size=_pair(v.get("image_size", 448)),
        patch_size=_pair(v.get("patch_size", 14)),
        qkv_bias=bool(v.get("attention_bias", False)),
        qk_norm=bool(v.get("use_qk_norm", False)),
        norm_type=str(v.get("norm_type", "layer_norm")),
        layer_norm_eps=float(v.get("layer_norm_eps", 1e-6)),
        hidden_act=str(v.get("hidden_act", "gelu")),
        layer_scale_init=float(v.get("layer_scale_init_value", 0.1)),
        final_norm=not v.get("use_mean_pooling", True),
    )
    if v.get("use_absolute_position_embeddings", True) is False or v.get("use_mask_token"):
        raise PuyuError(f"{source}: vision encoders without absolute positions or with mask tokens are not supported")
    if raw.get("vision_feature_select_strategy", "default") != "default":
        raise PuyuError(f"{source}: vision_feature_select_strategy must be 'default' (drop the CLS token)")
    layer = raw.get("vision_feature_layer", -1)
    if not isinstance(layer, int):
        raise PuyuError(f"{source}: vision_feature_layer must be one integer")
    text = _text_config(raw.get("text_config") or {}, source, raw)
    if "tie_word_embeddings" in raw:  # the top-level flag decides in the HF class
        text = text.replace(tie_word_embeddings=bool(raw["tie_word_embeddings"]))
    known = {"architectures", "model_type", "vision_config", "text_config", "image_token_id", "downsample_ratio",
             "vision_feature_layer", "projector_hidden_act", "vision_feature_select_strategy", "tie_word_embeddings",
             "torch_dtype", "dtype", "image_seq_length"}  # fmt: skip
    return VLMConfig(
        vision=vision,
        text=text,
        downsample_ratio=float(raw.get("downsample_ratio", 0.5)),
        vision_feature_layer=layer,
        projector_act=str(raw.get("projector_hidden_act", "gelu")),
        image_token_id=raw.get("image_token_id"),
        layout="hf",
        extra={k: val for k, val in raw.items() if k not in known},
    )


def _from_original(raw: dict[str, Any], source: str) -> VLMConfig:
    v = raw.get("vision_config") or {}
    if raw.get("ps_version", "v2") != "v2":
        raise PuyuError(f"{source}: ps_version {raw.get('ps_version')!r} is not supported (v2 only)")
    vision = VisionConfig(
        hidden_size=int(v.get("hidden_size", 1024)),
        intermediate_size=int(v.get("intermediate_size", 4096)),
        num_layers=int(v.get("num_hidden_layers", 24)),
        num_heads=int(v.get("num_attention_heads", 16)),
        image_size=_pair(v.get("image_size", raw.get("force_image_size") or 448)),
        patch_size=_pair(v.get("patch_size", 14)),
        qkv_bias=bool(v.get("qkv_bias", True)),
        qk_norm=bool(v.get("qk_normalization", False)),
        norm_type=str(v.get("norm_type", "layer_norm")),
        layer_norm_eps=float(v.get("layer_norm_eps", 1e-6)),
        hidden_act=str(v.get("hidden_act", "gelu")),
        layer_scale_init=float(v.get("initializer_factor", 0.1)),
    )
    text = _text_config(raw.get("llm_config") or {}, source, raw)
    known = {"architectures", "model_type", "vision_config", "llm_config", "downsample_ratio", "select_layer",
             "template", "dynamic_image_size", "max_dynamic_patch", "min_dynamic_patch", "use_thumbnail",
             "ps_version", "force_image_size", "torch_dtype", "image_token_id"}  # fmt: skip
    return VLMConfig(
        vision=vision,
        text=text,
        downsample_ratio=float(raw.get("downsample_ratio", 0.5)),
        vision_feature_layer=int(raw.get("select_layer", -1)),
        image_token_id=raw.get("image_token_id"),
        min_tiles=int(raw.get("min_dynamic_patch", 1)),
        max_tiles=int(raw.get("max_dynamic_patch", 12)),
        use_thumbnail=bool(raw.get("use_thumbnail", True)),
        dynamic_tiles=bool(raw.get("dynamic_image_size", True)),
        template=raw.get("template"),
        layout="original",
        extra={k: val for k, val in raw.items() if k not in known},
    )


def _to_native(config: VLMConfig) -> dict[str, Any]:
    if config.text.family == "internlm2":
        raise PuyuError("the HF-native InternVL layout has no InternLM2 text model; save with layout='original'")
    v = config.vision
    text = config.text.to_hf()
    out = {
        "architectures": [HF_ARCHITECTURE],
        "model_type": "internvl",
        "vision_config": {
            "model_type": "internvl_vision",
            "hidden_size": v.hidden_size,
            "intermediate_size": v.intermediate_size,
            "num_hidden_layers": v.num_layers,
            "num_attention_heads": v.num_heads,
            "image_size": [v.image_size, v.image_size],
            "patch_size": [v.patch_size, v.patch_size],
            "attention_bias": v.qkv_bias,
            "use_qk_norm": v.qk_norm,
            "norm_type": v.norm_type,
            "layer_norm_eps": v.layer_norm_eps,
            "hidden_act": v.hidden_act,
            "layer_scale_init_value": v.layer_scale_init,
            "use_mean_pooling": not v.final_norm,
            "use_absolute_position_embeddings": True,
        },
        "text_config": text,
        "downsample_ratio": config.downsample_ratio,
        "vision_feature_layer": config.vision_feature_layer,
        "vision_feature_select_strategy": "default",
        "projector_hidden_act": config.projector_act,
        "image_seq_length": config.tokens_per_tile,
        "tie_word_embeddings": config.text.tie_word_embeddings,
        "torch_dtype": config.text.torch_dtype,
    }
    if config.image_token_id is not None:
        out["image_token_id"] = config.image_token_id
    if config.layout == "hf":
        out.update({k: val for k, val in config.extra.items() if k not in out})
    return out


def _to_original(config: VLMConfig) -> dict[str, Any]:
    if config.vision.final_norm:
        raise PuyuError("the original InternVL layout has no final vision norm; save with layout='hf'")
    v = config.vision
    out = {
        "architectures": [ORIGINAL_ARCHITECTURE],
        "model_type": "internvl_chat",
        "vision_config": {
            "architectures": ["InternVisionModel"],
            "model_type": "intern_vit_6b",
            "hidden_size": v.hidden_size,
            "intermediate_size": v.intermediate_size,
            "num_hidden_layers": v.num_layers,
            "num_attention_heads": v.num_heads,
            "image_size": v.image_size,
            "patch_size": v.patch_size,
            "qkv_bias": v.qkv_bias,
            "qk_normalization": v.qk_norm,
            "norm_type": v.norm_type,
            "layer_norm_eps": v.layer_norm_eps,
            "hidden_act": v.hidden_act,
            "initializer_factor": v.layer_scale_init,
        },
        "llm_config": config.text.to_hf(),
        "downsample_ratio": config.downsample_ratio,
        "select_layer": config.vision_feature_layer,
        "ps_version": "v2",
        "force_image_size": v.image_size,
        "dynamic_image_size": config.dynamic_tiles,
        "use_thumbnail": config.use_thumbnail,
        "min_dynamic_patch": config.min_tiles,
        "max_dynamic_patch": config.max_tiles,
        "template": config.template or _default_template(config.text.family),
        "torch_dtype": config.text.torch_dtype,
    }
    if config.image_token_id is not None:
        out["image_token_id"] = config.image_token_id
    if config.layout == "original":
        out.update({k: val for k, val in config.extra.items() if k not in out})
    return out


def _default_template(family: str) -> str:
    return {"internlm2": "internlm2-chat", "qwen2": "Hermes-2", "llama": "llama3-chat"}.get(family, "internlm2-chat")
