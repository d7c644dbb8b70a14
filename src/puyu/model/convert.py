"""`puyu convert`: rewrite a model folder in another family's checkpoint layout.

InternLM2 ↔ Llama is exact (wqkv split/fuse is a reshape; weights keep their stored dtype), so the
Llama copy of an InternLM2 checkpoint loads in transformers, vLLM or PEFT without remote code.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from puyu.errors import PuyuError
from puyu.io import atomic_path, atomic_write_text
from puyu.model.checkpoint import load_model, save_model
from puyu.model.config import FAMILIES, Family, ModelConfig
from puyu.model.generation_config import write_generation_config

TOKENIZER_FILES = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
)


def convert_checkpoint(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    family: Family,
    max_shard_size: int | str = "5GB",
) -> Path:
    """Rewrite `source` in `family`'s layout under `target` (weights, config, tokenizer files).

    Args:
        source: HF model folder of any supported family.
        target: output folder (must differ from source).
        family: "internlm2", "llama" or "qwen2".
        max_shard_size: shard above this size.
    """
    if family not in FAMILIES:
        raise PuyuError(f"unknown target layout {family!r} (known: {', '.join(FAMILIES)})")
    source, target = Path(source), Path(target)
    if source.resolve() == target.resolve():
        raise PuyuError(f"{target}: the output folder must differ from the input folder")
    config = ModelConfig.from_pretrained(source)
    check_convertible(config, source, family)
    created = not target.exists()
    try:
        model = load_model(source, dtype=config.torch_dtype)  # stored dtype: conversion is bit-exact
        save_model(model, target, family=family, max_shard_size=max_shard_size)
        copy_tokenizer_files(source, target)
        drop_remote_code(target / "tokenizer_config.json", family)
        write_generation_config(target)
    except BaseException:
        if created:  # a half-written folder would look like a model
            shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def check_convertible(config: ModelConfig, source: Path, family: Family) -> None:
    """Refuse, before anything is written, a conversion that cannot give a working folder."""
    quantization = config.extra.get("quantization_config")
    if quantization is not None:
        bits = quantization.get("bits") if isinstance(quantization, dict) else None
        kind = f"an int{bits}" if isinstance(bits, int) else "a quantized"
        raise PuyuError(
            f"{source} is {kind} folder; convert the unquantized model, then quantize the result "
            f"(puyu convert SRC --to {family} --out DIR && puyu quantize DIR ...)"
        )
    if family == "qwen2" and not config.qkv_bias:
        raise PuyuError(
            f"{source} is a {config.family} model without q/k/v biases, and the Qwen2 layout always has them; "
            "InternLM2 and Llama models convert to each other (--to llama / --to internlm2)"
        )
    if family == "internlm2" and config.qkv_bias:
        raise PuyuError(f"{source} has q/k/v biases, which the InternLM2 layout cannot hold (try --to llama)")


def copy_tokenizer_files(source: Path, target: Path) -> None:
    """Copy a model folder's tokenizer files (and chat template) that exist into `target`, atomically."""
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            with atomic_path(target / name) as tmp:
                shutil.copyfile(source / name, tmp)


def drop_remote_code(file: Path, family: Family) -> None:
    """A converted folder carries no modeling/tokenizer code, so `auto_map` entries would point at nothing."""
    if family == "internlm2" or not file.is_file():
        return
    raw = json.loads(file.read_text(encoding="utf-8"))
    if raw.pop("auto_map", None) is not None:
        atomic_write_text(file, json.dumps(raw, indent=2, ensure_ascii=False) + "\n")
