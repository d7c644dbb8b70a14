"""ModelConfig ↔ GGUF metadata (llama.cpp's `{arch}.*` keys) for the llama, qwen2 and internlm2 architectures."""

from __future__ import annotations

from typing import Any

from puyu.errors import PuyuError
from puyu.model.config import Family, ModelConfig, RopeScaling
from puyu.model.gguf.reader import GGUFFile

# llama.cpp architecture name → puyu family (the same three names).
ARCHITECTURES: dict[str, Family] = {"llama": "llama", "qwen2": "qwen2", "internlm2": "internlm2"}


def family_of(file: GGUFFile) -> Family:
    arch = file.architecture
    if arch not in ARCHITECTURES:
        raise PuyuError(
            f"{file.path}: architecture {arch!r} is not supported (puyu imports {', '.join(ARCHITECTURES)})"
        )
    return ARCHITECTURES[arch]


def _required(file: GGUFFile, key: str) -> Any:
    value = file.arch_value(key)
    if value is None:
        raise PuyuError(f"{file.path}: missing metadata key {file.architecture}.{key}")
    return value


def _rope_scaling(file: GGUFFile) -> RopeScaling | None:
    if "rope_freqs.weight" in file.tensors:
        raise PuyuError(f"{file.path}: per-frequency RoPE factors (rope_freqs, Llama 3.1 style) are not imported yet")
    kind = file.arch_value("rope.scaling.type")
    if kind in (None, "none"):
        return None
    factor = file.arch_value("rope.scaling.factor")
    if kind != "linear" or factor is None:
        raise PuyuError(f"{file.path}: RoPE scaling {kind!r} is not supported (supported: linear)")
    return RopeScaling(type="linear", factor=float(factor))


def config_from_metadata(file: GGUFFile, torch_dtype: str = "float32") -> ModelConfig:
    """The ModelConfig a GGUF file describes.

    Args:
        file: The open file.
        torch_dtype: The storage dtype to record (dequantized weights are float32).
    """
    family = family_of(file)
    if "token_embd.weight" not in file.tensors:
        raise PuyuError(f"{file.path}: no token_embd.weight tensor")
    hidden = int(_required(file, "embedding_length"))
    heads = int(_required(file, "attention.head_count"))
    head_dim = file.arch_value("attention.key_length") or file.arch_value("rope.dimension_count") or hidden // heads
    rope_dims = file.arch_value("rope.dimension_count")
    if rope_dims is not None and int(rope_dims) != int(head_dim):
        raise PuyuError(f"{file.path}: partial RoPE ({rope_dims} of {head_dim} dims) is not supported")
    eps = file.arch_value("attention.layer_norm_rms_epsilon")
    if eps is None:
        raise PuyuError(f"{file.path}: no {file.architecture}.attention.layer_norm_rms_epsilon (not an RMSNorm model)")
    # Single-width floats (rms eps 1e-5 arrives as 9.9999997e-06): keep the decimal a config.json would hold.
    eps = float(f"{float(eps):.7g}")
    meta = file.metadata
    return ModelConfig(
        family=family,
        vocab_size=file.tensors["token_embd.weight"].shape[0],
        hidden_size=hidden,
        intermediate_size=int(_required(file, "feed_forward_length")),
        num_layers=int(_required(file, "block_count")),
        num_heads=heads,
        num_kv_heads=int(file.arch_value("attention.head_count_kv") or heads),
        head_dim=int(head_dim) if int(head_dim) != hidden // heads else None,
        max_position_embeddings=int(file.arch_value("context_length", 2048)),
        rope_theta=float(f"{float(file.arch_value('rope.freq_base', 10000.0)):.7g}"),
        rope_scaling=_rope_scaling(file),
        rms_norm_eps=eps,
        qkv_bias="blk.0.attn_q.bias" in file.tensors or family == "qwen2",
        tie_word_embeddings="output.weight" not in file.tensors,
        bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=meta.get("tokenizer.ggml.eos_token_id"),
        pad_token_id=meta.get("tokenizer.ggml.padding_token_id"),
        torch_dtype=torch_dtype,
    )


def write_hparams(writer: Any, config: ModelConfig) -> None:
    """Add the `{arch}.*` keys of `config` to a `gguf.GGUFWriter` (whose architecture is config.family)."""
    if config.rope_scaling is not None and config.rope_scaling.type == "llama3":
        raise PuyuError("GGUF export of llama3 RoPE scaling is not supported yet")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_heads)
    writer.add_head_count_kv(config.num_kv_heads)
    writer.add_rope_dimension_count(config.head_dim)
    if config.head_dim != config.hidden_size // config.num_heads:
        writer.add_key_length(config.head_dim)
        writer.add_value_length(config.head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(config.rope_theta)
    writer.add_vocab_size(config.vocab_size)
    if config.rope_scaling is not None and config.rope_scaling.type == "linear":
        gguf = __import__("gguf")
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(config.rope_scaling.factor)
    # "dynamic" (NTK) scaling has no GGUF key: llama.cpp runs such a model unscaled, which is exact up to
    # max_position_embeddings, where dynamic scaling starts.
