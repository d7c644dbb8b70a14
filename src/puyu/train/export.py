"""From a training checkpoint to an HF model folder that puyu, transformers, vLLM or LMDeploy load.

A checkpoint holds the weights in puyu's internal (HF Llama) names and the training dtype; the export
writes them in a family's own layout (InternLM2's fused `wqkv`, or the Llama layout transformers loads
without remote code) and storage dtype, beside the run's tokenizer.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import torch

from puyu.errors import PuyuError
from puyu.model.checkpoint import parse_device, parse_dtype, save_model
from puyu.model.config import FAMILIES, Family, ModelConfig
from puyu.model.convert import drop_remote_code
from puyu.model.decoder import CausalLM
from puyu.model.generation_config import write_generation_config
from puyu.model.weight_names import internal_shapes
from puyu.train.checkpoint import CONFIG_FILE, latest_checkpoint, read_model_weights, verify_checkpoint
from puyu.train.checkpoint_folders import CHECKPOINTS, MANIFEST

RUN_TOKENIZER = "tokenizer"


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint folder from a checkpoint folder, a run folder (its latest) or a run's `checkpoints/`.

    Raises:
        PuyuError: nothing there, or a run without a complete checkpoint.
    """
    folder = Path(path)
    if (folder / MANIFEST).is_file():
        return folder
    run_dir = folder.parent if folder.name == CHECKPOINTS else folder
    if (run_dir / CHECKPOINTS).is_dir():
        latest = latest_checkpoint(run_dir)
        if latest is None:
            raise PuyuError(f"{run_dir / CHECKPOINTS}: no complete checkpoint")
        return latest
    if not folder.exists():
        raise PuyuError(f"{folder}: no such file or folder")
    raise PuyuError(f"{folder}: neither a training checkpoint (no {MANIFEST}) nor a run folder (no {CHECKPOINTS}/)")


def find_tokenizer(checkpoint: Path, tokenizer: str | os.PathLike[str] | None = None) -> Path | None:
    """The tokenizer folder to export with a checkpoint: `tokenizer` if given, else the run's
    `run_dir/tokenizer` when it saved one, else None."""
    if tokenizer is not None:
        return Path(tokenizer)
    if checkpoint.parent.name == CHECKPOINTS:
        candidate = checkpoint.parent.parent / RUN_TOKENIZER
        if candidate.is_dir():
            return candidate
    return None


def load_checkpoint_model(
    checkpoint: str | os.PathLike[str],
    dtype: str | torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> CausalLM:
    """The model of a training checkpoint (weights only: evaluation, export).

    Args:
        checkpoint: a checkpoint folder, or a run folder (its latest checkpoint).
        dtype: compute dtype; default the training dtype the weights were saved in.
        device: where the weights go.

    Returns:
        The model in eval mode.
    """
    folder = resolve_checkpoint(checkpoint)
    verify_checkpoint(folder)
    config = ModelConfig.from_pretrained(folder / CONFIG_FILE)
    weights = read_model_weights(folder)
    wanted = internal_shapes(config)
    if any(".lora_" in name for name in weights):
        raise PuyuError(lora_run_message(folder))
    for name, tensor in weights.items():
        if name not in wanted:
            raise PuyuError(f"{folder}: tensor {name} does not belong to a {config.family} model of this shape")
        if tuple(tensor.shape) != wanted[name]:
            raise PuyuError(
                f"{folder}: tensor {name} has shape {tuple(tensor.shape)}, config.json implies {wanted[name]}"
            )
    missing = [name for name in wanted if name not in weights]
    if missing:
        raise PuyuError(f"{folder}: missing tensors {', '.join(missing[:4])}")
    target = parse_device(device)
    with torch.device("meta"):
        model = CausalLM(config)
    cast = parse_dtype(dtype) if dtype is not None else None
    weights = {name: t.to(device=target, dtype=cast or t.dtype) for name, t in weights.items()}
    model.load_state_dict(weights, strict=False, assign=True)
    model.tie_weights()
    model.rotary.materialize(target)
    return model.eval()


def lora_run_message(checkpoint: Path) -> str:
    """What to say when a LoRA run's checkpoint is given where a whole model is needed."""
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS else checkpoint
    base = "BASE"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        base = str(json.loads((run_dir / "finetune_config.json").read_text(encoding="utf-8"))["model"])
    return (
        f"{checkpoint} is a checkpoint of a LoRA/QLoRA fine-tuning run: it holds adapter weights, not a whole "
        f"model. Fold the adapter into its base with `puyu merge {base} {run_dir / 'adapter'} --out DIR`, "
        f"or use it as it is with `puyu chat {base} --adapter {run_dir / 'adapter'}`"
    )


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    *,
    family: str | None = None,
    dtype: str | None = None,
    tokenizer: str | Path | None = None,
    max_shard_size: int | str = "5GB",
) -> Path:
    """Write an HF model folder from a training checkpoint.

    Args:
        checkpoint: a checkpoint folder, or a run folder (its latest checkpoint).
        out: output folder (created; must not be the checkpoint itself).
        family: checkpoint layout: "internlm2", "llama" or "qwen2"; default the model's own family.
        dtype: storage dtype ("bfloat16", "float16", "float32"); default the model config's `torch_dtype`.
        tokenizer: tokenizer folder to copy; default the run's `tokenizer/` when there is one.
        max_shard_size: shard above this size.

    Returns:
        The output folder.

    Raises:
        PuyuError: no checkpoint there, an unknown layout or dtype, a layout the model cannot be written in,
            or a tokenizer with more tokens than the model has embeddings.
    """
    from puyu.tokenizer import Tokenizer

    folder = resolve_checkpoint(checkpoint)
    out = Path(out)
    if out.resolve() == folder.resolve() or folder.resolve() in out.resolve().parents:
        raise PuyuError(f"{out}: the output folder must lie outside the checkpoint {folder}")
    if family is not None and family not in FAMILIES:
        raise PuyuError(f"unknown layout {family!r} (known: {', '.join(FAMILIES)})")
    if dtype is not None:
        parse_dtype(dtype)
    model = load_checkpoint_model(folder)
    layout: Family = family or model.config.family  # type: ignore[assignment]
    model.config.to_hf(layout)  # a layout this model cannot take fails here, before anything is written
    source = find_tokenizer(folder, tokenizer)
    loaded = Tokenizer.from_pretrained(source) if source is not None else None
    if loaded is not None and loaded.vocab_size > model.config.vocab_size:
        raise PuyuError(
            f"{source}: the tokenizer has {loaded.vocab_size} tokens, "
            f"the model only {model.config.vocab_size} embeddings"
        )
    save_model(model, out, family=layout, dtype=dtype, max_shard_size=max_shard_size)
    if loaded is not None:
        loaded.save_pretrained(out)
        drop_remote_code(out / "tokenizer_config.json", layout)
        write_generation_config(out)
    return out
