"""ModelConfig: the one description of a decoder, and its mapping to each family's HF `config.json`.

InternLM2, Llama and Qwen2 share one architecture (pre-norm decoder, RMSNorm, RoPE, GQA, SwiGLU);
what differs between them is held here as values (`family`, `qkv_bias`, `rope_scaling`, ...) and in
the checkpoint weight-name map (`puyu.model.weight_names`), never in subclasses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from puyu.errors import PuyuError

Family = Literal["internlm2", "llama", "qwen2"]
FAMILIES: tuple[str, ...] = ("internlm2", "llama", "qwen2")

ARCHITECTURES: dict[str, Family] = {
    "InternLM2ForCausalLM": "internlm2",
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
}
MODEL_TYPES: dict[Family, str] = {"internlm2": "internlm2", "llama": "llama", "qwen2": "qwen2"}
ARCHITECTURE_OF: dict[Family, str] = {family: arch for arch, family in ARCHITECTURES.items()}

RopeType = Literal["linear", "dynamic", "llama3"]


@dataclass(frozen=True)
class RopeScaling:
    """RoPE context extension, as in the HF `rope_scaling` dict.

    Args:
        type: "linear" (positions divided by `factor`), "dynamic" (NTK-aware base growth once the sequence
            passes `max_position_embeddings`, as InternLM2 and transformers apply it) or "llama3"
            (Llama-3.1 wavelength-dependent interpolation).
        factor: the scaling factor.
        low_freq_factor, high_freq_factor, original_max_position_embeddings: llama3 only.
    """

    type: RopeType
    factor: float
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    original_max_position_embeddings: int | None = None

    def __post_init__(self) -> None:
        if self.type not in ("linear", "dynamic", "llama3"):
            raise PuyuError(f"rope_scaling: unsupported type {self.type!r} (supported: linear, dynamic, llama3)")
        if self.factor <= 0:
            raise PuyuError(f"rope_scaling: factor must be positive, got {self.factor}")
        if self.type == "llama3" and None in (
            self.low_freq_factor,
            self.high_freq_factor,
            self.original_max_position_embeddings,
        ):
            raise PuyuError(
                "rope_scaling: llama3 needs low_freq_factor, high_freq_factor and original_max_position_embeddings"
            )

    @classmethod
    def from_hf(cls, raw: dict[str, Any] | None) -> RopeScaling | None:
        """Read HF `rope_scaling` / `rope_parameters` (either key spelling of the type); None when unscaled."""
        if not raw:
            return None
        kind = raw.get("rope_type", raw.get("type"))
        if kind in (None, "default"):
            return None
        try:
            factor = float(raw["factor"])
        except (KeyError, TypeError, ValueError):
            raise PuyuError(f"rope_scaling: {kind!r} needs a numeric 'factor', got {raw!r}") from None
        return cls(
            type=kind,
            factor=factor,
            low_freq_factor=raw.get("low_freq_factor"),
            high_freq_factor=raw.get("high_freq_factor"),
            original_max_position_embeddings=raw.get("original_max_position_embeddings"),
        )

    def to_hf(self) -> dict[str, Any]:
        # Both spellings: older readers (InternLM2 remote code, vLLM) take "type", newer ones "rope_type".
        out: dict[str, Any] = {"type": self.type, "rope_type": self.type, "factor": self.factor}
        if self.type == "llama3":
            out.update(
                low_freq_factor=self.low_freq_factor,
                high_freq_factor=self.high_freq_factor,
                original_max_position_embeddings=self.original_max_position_embeddings,
            )
        return out


@dataclass
class ModelConfig:
    """Shape and numerics of a decoder-only transformer.

    Args:
        family: checkpoint layout and defaults: "internlm2", "llama" or "qwen2".
        vocab_size: rows of the embedding and output matrices.
        hidden_size: model width.
        intermediate_size: SwiGLU inner width.
        num_layers: decoder blocks.
        num_heads: query heads.
        num_kv_heads: key/value heads (GQA when fewer than num_heads).
        head_dim: per-head width; defaults to hidden_size // num_heads.
        max_position_embeddings: trained context length (also the dynamic-NTK threshold).
        rope_theta: RoPE base.
        rope_scaling: context extension, or None.
        rms_norm_eps: RMSNorm epsilon.
        qkv_bias: bias on the q/k/v projections (Qwen2).
        tie_word_embeddings: output matrix shares the embedding's weight.
        bos_token_id, eos_token_id, pad_token_id: special ids recorded in config.json.
        torch_dtype: dtype the weights are stored in ("bfloat16", "float16", "float32").
    """

    family: Family = "internlm2"
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_layers: int = 32
    num_heads: int = 32
    num_kv_heads: int = 32
    head_dim: int | None = None
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    rms_norm_eps: float = 1e-5
    qkv_bias: bool = False
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = None
    torch_dtype: str = "bfloat16"
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise PuyuError(f"unknown model family {self.family!r} (known: {', '.join(FAMILIES)})")
        if isinstance(self.rope_scaling, dict):
            self.rope_scaling = RopeScaling.from_hf(self.rope_scaling)
        if self.head_dim is None:
            if self.hidden_size % self.num_heads:
                raise PuyuError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
            self.head_dim = self.hidden_size // self.num_heads
        if self.num_heads % self.num_kv_heads:
            raise PuyuError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
        ):
            if getattr(self, name) <= 0:
                raise PuyuError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def kv_groups(self) -> int:
        """Query heads per key/value head."""
        return self.num_heads // self.num_kv_heads

    @property
    def eos_token_ids(self) -> list[int]:
        if self.eos_token_id is None:
            return []
        return list(self.eos_token_id) if isinstance(self.eos_token_id, list) else [self.eos_token_id]

    def num_parameters(self) -> int:
        """Parameter count (tied embeddings counted once)."""
        d, hd = self.hidden_size, self.head_dim or 0
        attn = d * hd * (self.num_heads + 2 * self.num_kv_heads) + self.num_heads * hd * d
        if self.qkv_bias:
            attn += hd * (self.num_heads + 2 * self.num_kv_heads)
        mlp = 3 * d * self.intermediate_size
        per_layer = attn + mlp + 2 * d
        embed = self.vocab_size * d * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * per_layer + embed + d

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with `changes`; a derived head width follows a new shape, only an explicitly set one is kept."""
        if "head_dim" not in changes and self.head_dim == self.hidden_size // self.num_heads:
            changes["head_dim"] = None
        return dataclasses.replace(self, **changes)

    # ---- HF config.json -------------------------------------------------------------------------

    @classmethod
    def from_hf(cls, raw: dict[str, Any], source: str = "config.json") -> ModelConfig:
        """Build from a parsed HF `config.json` of any supported family.

        Args:
            raw: the parsed JSON.
            source: name used in error messages.
        """
        archs = raw.get("architectures") or []
        family: Family | None = next((ARCHITECTURES[a] for a in archs if a in ARCHITECTURES), None)
        if family is None and not archs:
            family = {v: k for k, v in MODEL_TYPES.items()}.get(raw.get("model_type", ""))
        if family is None:
            known = ", ".join(ARCHITECTURES)
            raise PuyuError(f"{source}: unknown architectures {archs or raw.get('model_type')!r} (puyu loads {known})")
        try:
            hidden = int(raw["hidden_size"])
            heads = int(raw["num_attention_heads"])
            rope_raw = raw.get("rope_parameters") or raw.get("rope_scaling")
            rope_theta = raw.get("rope_theta")
            if rope_theta is None and isinstance(raw.get("rope_parameters"), dict):
                rope_theta = raw["rope_parameters"].get("rope_theta")
            if family == "internlm2":
                if raw.get("bias"):  # InternLM2's bias=true also puts a bias on wo, which no checkpoint uses
                    raise PuyuError(f"{source}: InternLM2 with bias=true is not supported")
                qkv_bias = False
            elif family == "qwen2":
                qkv_bias = True
            else:
                qkv_bias = bool(raw.get("attention_bias", False))
            if family == "llama" and raw.get("mlp_bias"):
                raise PuyuError(f"{source}: mlp_bias=true is not supported")
            if family == "qwen2" and raw.get("use_sliding_window"):
                raise PuyuError(f"{source}: use_sliding_window=true is not supported")
            if raw.get("hidden_act", "silu") != "silu":
                raise PuyuError(f"{source}: hidden_act {raw['hidden_act']!r} is not supported (silu only)")
            known_keys = {
                "architectures", "model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings",
                "rope_theta", "rope_scaling", "rope_parameters", "rms_norm_eps", "bias", "attention_bias",
                "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "torch_dtype", "dtype",
                "vocab_size", "hidden_act", "mlp_bias", "use_sliding_window",
            }  # fmt: skip
            return cls(
                family=family,
                vocab_size=int(raw["vocab_size"]),
                hidden_size=hidden,
                intermediate_size=int(raw["intermediate_size"]),
                num_layers=int(raw["num_hidden_layers"]),
                num_heads=heads,
                num_kv_heads=int(raw.get("num_key_value_heads") or heads),
                head_dim=int(raw["head_dim"]) if raw.get("head_dim") else None,
                max_position_embeddings=int(raw.get("max_position_embeddings", 2048)),
                rope_theta=float(rope_theta if rope_theta is not None else 10000.0),
                rope_scaling=RopeScaling.from_hf(rope_raw),
                rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
                qkv_bias=qkv_bias,
                tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
                bos_token_id=raw.get("bos_token_id"),
                eos_token_id=raw.get("eos_token_id"),
                pad_token_id=raw.get("pad_token_id"),
                torch_dtype=str(raw.get("torch_dtype") or raw.get("dtype") or "bfloat16"),
                extra={k: v for k, v in raw.items() if k not in known_keys},
            )
        except KeyError as missing:
            raise PuyuError(f"{source}: missing required key {missing.args[0]!r}") from None
        except (TypeError, ValueError) as bad:
            raise PuyuError(f"{source}: invalid value ({bad})") from None

    def to_hf(self, family: Family | None = None) -> dict[str, Any]:
        """The `config.json` dict in a family's own format (default: this config's family).

        Written in the classic key set (`rope_theta` + `rope_scaling`) that transformers 4.x/5.x, vLLM and
        LMDeploy all read.
        """
        family = family or self.family
        out: dict[str, Any] = {
            "architectures": [ARCHITECTURE_OF[family]],
            "model_type": MODEL_TYPES[family],
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling.to_hf() if self.rope_scaling else None,
            "rms_norm_eps": self.rms_norm_eps,
            "hidden_act": "silu",
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
            "torch_dtype": self.torch_dtype,
            "use_cache": True,
        }
        if family == "internlm2":
            if self.qkv_bias:
                raise PuyuError("the InternLM2 layout has no q/k/v bias; this model has one")
            out["bias"] = False
            # InternLM2 checkpoints are read with the model's remote code; keep the auto_map so that
            # `trust_remote_code=True` loaders find it when the modeling files sit beside the weights.
            out["auto_map"] = {
                "AutoConfig": "configuration_internlm2.InternLM2Config",
                "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
                "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
            }
        elif family == "qwen2":
            if not self.qkv_bias:
                raise PuyuError("the Qwen2 layout always has q/k/v bias; this model has none")
            out["use_sliding_window"] = False
        else:
            out["attention_bias"] = self.qkv_bias
            out["mlp_bias"] = False
        if family == self.family:  # unknown keys belong to the source family's format
            for key, value in self.extra.items():
                out.setdefault(key, value)
        return out

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str]) -> ModelConfig:
        """Read `config.json` from a model folder (or the file itself)."""
        file = Path(path)
        if file.is_dir():
            file = file / "config.json"
        if not file.is_file():
            if (file.parent / "adapter_config.json").is_file():
                raise PuyuError(adapter_folder_message(file.parent))
            raise PuyuError(f"{file}: no such file (a model folder needs config.json)")
        try:
            raw = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as bad:
            raise PuyuError(f"{file}: not valid JSON ({bad})") from None
        if not isinstance(raw, dict):
            raise PuyuError(f"{file}: expected a JSON object")
        return cls.from_hf(raw, source=str(file))

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> ModelConfig:
        """A named preset (see `PRESETS`), with fields overridden."""
        from puyu.model.presets import PRESETS

        if name not in PRESETS:
            raise PuyuError(f"unknown preset {name!r} (known: {', '.join(sorted(PRESETS))})")
        return PRESETS[name].replace(**overrides)


def adapter_folder_message(folder: Path) -> str:
    """What to say when a LoRA adapter folder is given where a model folder is needed."""
    base = "BASE"
    with contextlib.suppress(OSError, ValueError, AttributeError):
        raw = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        base = str(raw.get("base_model_name_or_path") or "BASE")
    return (
        f"{folder} is a LoRA adapter folder (trained on {base}), not a model: give the base model and the adapter, "
        f"e.g. `puyu chat {base} --adapter {folder}` or `puyu serve {base} --adapters NAME={folder}`, "
        f"or fold it in with `puyu merge {base} {folder} --out DIR`"
    )
