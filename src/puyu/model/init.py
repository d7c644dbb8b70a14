"""Random initialisation: the starting point for pretraining, and the stand-in for real weights in tests
and benchmarks (nothing can be downloaded here)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from puyu.errors import PuyuError
from puyu.model.checkpoint import parse_dtype, save_model
from puyu.model.config import ModelConfig
from puyu.model.decoder import CausalLM, RMSNorm
from puyu.model.generation_config import write_generation_config

# The chat-token set of the built-in tokenizer for each family (its default chat template's tokens).
FAMILY_CHAT_TOKENS = {"internlm2": "internlm2", "llama": "llama3", "qwen2": "qwen2"}


@torch.no_grad()
def init_weights(model: CausalLM, seed: int = 0, std: float = 0.02) -> CausalLM:
    """Normal(0, std) matrices, zero biases, unit norms; deterministic for a seed.

    Args:
        model: the model to overwrite in place.
        seed: random seed.
        std: standard deviation of matrix entries (0.02 as in GPT-2/Llama pretraining).
    """
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        module = model.get_submodule(name.rpartition(".")[0])
        if isinstance(module, RMSNorm):
            param.fill_(1.0)
        elif name.endswith(".bias"):
            param.zero_()
        else:
            param.copy_(torch.empty(param.shape, dtype=torch.float32).normal_(0.0, std, generator=generator))
    return model


def random_model(config: ModelConfig, seed: int = 0, std: float = 0.02, dtype: torch.dtype = torch.float32) -> CausalLM:
    """A freshly initialised model of `config`, allocated once, directly in `dtype` on the CPU."""
    with torch.device("meta"):
        model = CausalLM(config).to(dtype)
    model.to_empty(device="cpu")
    model.tie_weights()
    model.rotary.materialize(torch.device("cpu"))
    return init_weights(model, seed=seed, std=std).eval()


def init_model_folder(
    preset: str,
    out: str | os.PathLike[str],
    *,
    overrides: dict[str, object] | None = None,
    tokenizer_dir: str | os.PathLike[str] | None = None,
    dtype: str | None = None,
    seed: int = 0,
    max_shard_size: int | str = "5GB",
) -> Path:
    """Write a random-init HF model folder of a preset shape, with a working tokenizer.

    Args:
        preset: shape name (see `puyu.model.presets.PRESETS`).
        out: output folder.
        overrides: config fields to change, e.g. {"num_layers": 4}.
        tokenizer_dir: folder whose tokenizer to copy; default a built-in byte-level BPE with the family's
            chat tokens (no merges, so it needs no training data).
        dtype: storage dtype; default the preset's.
        seed: initialisation seed.
        max_shard_size: shard above this size.
    """
    from puyu.tokenizer import Tokenizer, byte_level_tokenizer

    config = ModelConfig.from_name(preset, **(overrides or {}))
    if tokenizer_dir is not None:
        tokenizer = Tokenizer.from_pretrained(tokenizer_dir)
    else:
        tokenizer = byte_level_tokenizer(FAMILY_CHAT_TOKENS[config.family])
    if tokenizer.vocab_size > config.vocab_size:
        raise PuyuError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but {preset} only {config.vocab_size} embeddings "
            f"(use --set vocab_size={tokenizer.vocab_size})"
        )
    config = config.replace(
        bos_token_id=tokenizer.bos_id,
        eos_token_id=tokenizer.eos_id,
        pad_token_id=tokenizer.pad_id,
        torch_dtype=dtype or config.torch_dtype,
    )
    model = random_model(config, seed=seed, dtype=parse_dtype(config.torch_dtype))
    folder = save_model(model, out, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(folder)
    write_generation_config(folder)
    return folder
