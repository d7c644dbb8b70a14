"""Weight-only quantization of a model or a model folder (`puyu quantize`).

`quantize_model` swaps a CausalLM's decoder linears (and the output head, as int8) for quantized modules
by round-to-nearest; `quantize_folder` loads an HF folder in fp32, optionally searches AWQ scales on
calibration text first, quantizes, and writes a quantized HF folder with the tokenizer files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from puyu.errors import PuyuError
from puyu.io import atomic_path
from puyu.model.checkpoint import load_model, parse_dtype
from puyu.model.config import ModelConfig
from puyu.model.convert import copy_tokenizer_files
from puyu.model.decoder import CausalLM
from puyu.model.generation_config import write_generation_config
from puyu.model.weight_names import internal_shapes
from puyu.quant.loading import (
    LAYER_LINEARS,
    METHODS,
    QUANT_CONFIG_KEY,
    QuantSpec,
    finalize_head,
    quantized_paths,
    save_quantized,
    set_module,
)
from puyu.quant.weight_only import Int4Linear, Int8Linear, QuantLinear, check_int4_shape

logger = logging.getLogger(__name__)


def quantize_linear(linear: nn.Linear, spec: QuantSpec, path: str = "") -> QuantLinear:
    """Round-to-nearest quantization of one layer (the output head is always int8)."""
    if spec.method == "int8" or path == "lm_head":
        return Int8Linear.from_linear(linear)
    try:
        return Int4Linear.from_linear(linear, group_size=spec.group_size)
    except PuyuError as bad:
        raise PuyuError(f"{path}: {bad}") from None


def ungroupable_linears(config: ModelConfig, group_size: int) -> tuple[str, ...]:
    """The per-block linears whose input width does not split into int4 groups of `group_size`."""
    shapes = internal_shapes(config)
    return tuple(name for name in LAYER_LINEARS if shapes[f"model.layers.0.{name}.weight"][1] % group_size)


@torch.no_grad()
def quantize_model(model: CausalLM, spec: QuantSpec, *, head: bool = True) -> CausalLM:
    """Replace the decoder's linear layers by quantized modules, in place.

    Args:
        model: an unquantized model (weights in any float dtype).
        spec: method, group size, layers to skip, and whether the output head becomes int8.
        head: also quantize the output head when `spec.lm_head` (False leaves it for `finalize_head`).
    """
    for path in quantized_paths(model.config, spec, on_disk=not head):
        module = model.get_submodule(path)
        if isinstance(module, QuantLinear):
            raise PuyuError(f"{path} is already quantized")
        assert isinstance(module, nn.Linear)
        set_module(model, path, quantize_linear(module, spec, path).to(module.weight.device))
    return model


def read_calibration_texts(path: str | os.PathLike[str]) -> list[str]:
    """Calibration text: a .txt file (one text) or .jsonl with a "text" field per line."""
    file = Path(path)
    if not file.is_file():
        raise PuyuError(f"{file}: calibration file not found")
    if file.suffix == ".jsonl":
        texts = []
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as bad:
                raise PuyuError(f"{file}:{number}: not valid JSON ({bad.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise PuyuError(f"{file}:{number}: expected an object with a string field 'text'")
            texts.append(record["text"])
    elif file.suffix in (".txt", ".md", ""):
        texts = [file.read_text(encoding="utf-8")]
    else:
        raise PuyuError(f"{file}: calibration text must be .txt or .jsonl (with a 'text' field)")
    if not any(t.strip() for t in texts):
        raise PuyuError(f"{file}: no calibration text")
    return texts


def copy_side_files(source: Path, target: Path) -> None:
    """Tokenizer files and any remote modeling code (*.py) beside the weights."""
    copy_tokenizer_files(source, target)
    for code in source.glob("*.py"):
        with atomic_path(target / code.name) as tmp:
            shutil.copyfile(code, tmp)


def quantize_folder(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    method: str,
    group_size: int = 128,
    awq: bool = False,
    calib_texts: list[str] | None = None,
    calib_samples: int = 64,
    lm_head: bool = True,
    calib_seq_len: int = 512,
) -> Path:
    """Quantize an HF model folder into `out` (weights, config.json with quantization_config, tokenizer).

    Args:
        src: unquantized HF model folder.
        out: output folder (must differ from src).
        method: "int8" (per-channel symmetric) or "int4" (group-wise with zero points, AWQ layout).
        group_size: int4 group width along the input dimension.
        awq: search activation-aware scales on `calib_texts` before quantizing.
        calib_texts: calibration text (required with `awq`).
        calib_samples: calibration sequences of `calib_seq_len` tokens at most.
        lm_head: quantize the output head to int8.
        calib_seq_len: tokens per calibration sequence.
    """
    if method not in METHODS:
        raise PuyuError(f"unknown quantization method {method!r} (known: {', '.join(METHODS)})")
    source, target = Path(src), Path(out)
    if not source.is_dir():
        raise PuyuError(f"{source}: not a model folder")
    if target.exists() and target.resolve() == source.resolve():
        raise PuyuError(f"{target}: the output folder must differ from the input folder")
    config = ModelConfig.from_pretrained(source)
    if QUANT_CONFIG_KEY in config.extra:
        raise PuyuError(f"{source}: already quantized (config.json has a quantization_config)")
    if awq and not calib_texts:
        raise PuyuError("AWQ needs calibration text (--calib FILE)")
    if calib_samples < 1:
        raise PuyuError(f"calib_samples must be at least 1, got {calib_samples}")
    if method == "int4":
        check_int4_shape(group_size, group_size)
        ragged = ungroupable_linears(config, group_size)
        if ragged:
            logger.info("int4 group size %d does not divide the inputs of %s: last group padded", group_size, ragged)
    spec = QuantSpec(method, group_size=group_size, lm_head=lm_head, awq=awq)  # type: ignore[arg-type]

    model = load_model(source, dtype="float32")
    if awq:
        from puyu.quant.awq import apply_awq, calibration_batches
        from puyu.tokenizer import Tokenizer

        tokenizer = Tokenizer.from_pretrained(source)
        tokens = calibration_batches(tokenizer, calib_texts or [], calib_samples, calib_seq_len)
        apply_awq(model, tokens, spec)
    round_to_storage(model, config.torch_dtype)
    quantize_model(model, spec, head=method == "int8")
    save_quantized(model, target, spec)
    copy_side_files(source, target)
    write_generation_config(target)
    finalize_head(model, spec)
    return target


@torch.no_grad()
def round_to_storage(model: CausalLM, dtype: str) -> None:
    """Round every weight to the storage dtype (kept in fp32) so the saved folder reloads bit-exactly."""
    store = parse_dtype(dtype)
    if store == torch.float32:
        return
    for param in model.parameters():
        param.copy_(param.to(store).float())
