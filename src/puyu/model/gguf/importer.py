"""GGUF → puyu: a model in memory, or an ordinary HF model folder (config, safetensors, tokenizer files)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from puyu.errors import PuyuError
from puyu.model.checkpoint import _few, _set_parameter, parse_device, resolve_dtype, save_model
from puyu.model.config import ModelConfig
from puyu.model.decoder import CausalLM
from puyu.model.gguf.hparams import config_from_metadata
from puyu.model.gguf.reader import GGUFFile
from puyu.model.gguf.tensor_names import from_rotary_pairs, to_puyu_name
from puyu.model.weight_names import internal_shapes


def read_gguf_model(
    file: GGUFFile, dtype: str | torch.dtype | None = "float32", device: str | torch.device = "cpu"
) -> CausalLM:
    """Build puyu's model from an open GGUF file, every tensor dequantized (then cast to `dtype`).

    Args:
        file: The open file.
        dtype: Compute dtype ("auto" and None mean float32 on CPUs).
        device: Where the weights go.
    """
    config = config_from_metadata(file)
    file.check_types()
    target_device = parse_device(device)
    target_dtype = resolve_dtype(dtype, "float32", target_device, config.num_parameters())
    with torch.device("meta"):
        model = CausalLM(config)
    wanted = internal_shapes(config)
    seen: set[str] = set()
    unexpected: list[str] = []
    for gguf_name in file.tensors:
        name = to_puyu_name(gguf_name)
        if name is None or name not in wanted:
            unexpected.append(gguf_name)
            continue
        if file.tensors[gguf_name].shape != wanted[name]:
            raise PuyuError(
                f"{file.path}: tensor {gguf_name} has shape {file.tensors[gguf_name].shape}, "
                f"the metadata implies {wanted[name]}"
            )
        value = from_rotary_pairs(name, torch.from_numpy(file.read(gguf_name)), config, file.architecture)
        _set_parameter(model, name, value.to(device=target_device, dtype=target_dtype))
        seen.add(name)
    if unexpected:
        raise PuyuError(f"{file.path}: unexpected tensors {_few(unexpected)} for a {file.architecture} model")
    missing = [name for name in wanted if name not in seen]
    if missing:
        raise PuyuError(f"{file.path}: missing tensors {_few(missing)}")
    model.tie_weights()
    model.rotary.materialize(target_device)
    return model.eval()


def load_gguf_model(
    path: str | os.PathLike[str], dtype: str | torch.dtype | None = "auto", device: str | torch.device = "cpu"
) -> CausalLM:
    """`load_model` for a .gguf file: the model with every tensor dequantized."""
    return read_gguf_model(GGUFFile(path), dtype=dtype, device=device)


def import_gguf(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    dtype: str = "float32",
    max_shard_size: int | str = "5GB",
) -> Path:
    """Write an HF model folder (config.json, safetensors, tokenizer files, chat template) from a GGUF file.

    Args:
        path: The .gguf file (llama, qwen2 or internlm2 architecture).
        out: The output folder.
        dtype: Storage dtype; float32 (default) keeps every dequantized value exactly.
        max_shard_size: Shard above this size.

    Returns:
        The folder.
    """
    from puyu.tokenizer.gguf_vocab import GGUFVocab

    file = GGUFFile(path)
    # Architecture and tokenizer first: a file puyu cannot import fails before the weights are read.
    config_from_metadata(file)
    tokenizer = GGUFVocab.from_metadata(file.metadata, str(file.path)).to_tokenizer(str(file.path))
    model = read_gguf_model(file, dtype="float32")
    folder = save_model(model, out, dtype=dtype, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(folder)
    return folder


def gguf_config(path: str | os.PathLike[str]) -> ModelConfig:
    """The ModelConfig of a GGUF file, without reading its tensors."""
    return config_from_metadata(GGUFFile(path))
