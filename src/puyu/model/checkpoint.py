"""HF model folders: load and save weights of every supported family.

Loading builds the model on the meta device (no memory), then streams tensors one at a time from
memory-mapped safetensors (or `pytorch_model.bin` with `weights_only`), converting each to its target
dtype and device before the next is read: peak memory is the model plus one tensor. Saving writes
each family's own names, shards above `max_shard_size` with a `model.safetensors.index.json`, and
replaces every file atomically (temp file + rename).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from puyu.errors import PuyuError, one_line
from puyu.io import atomic_path, atomic_write_text
from puyu.model.config import Family, ModelConfig
from puyu.model.decoder import CausalLM
from puyu.model.generation_config import write_generation_config
from puyu.model.hf_remote import write_remote_code
from puyu.model.weight_names import checkpoint_shapes, from_internal, is_ignored, to_internal

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_BIN = "pytorch_model.bin"
TORCH_BIN_INDEX = "pytorch_model.bin.index.json"

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}  # fmt: skip


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name not in _DTYPES:
        raise PuyuError(f"unknown dtype {name!r} (known: float32, bfloat16, float16, auto)")
    return _DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def cpu_has_fast_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX-512-BF16 / AMX); elsewhere bf16 is emulated, ~500x slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def parse_device(device: str | torch.device) -> torch.device:
    """A torch device that exists on this machine; "auto" is CUDA when available, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise PuyuError(f"unknown device {device!r} (e.g. cpu, cuda, cuda:1)") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise PuyuError(f"device {device!r} requested, but CUDA is not available on this machine")
    return parsed


def available_memory_bytes() -> int | None:
    """Memory the OS can give this process now (Linux), or None where unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def resolve_dtype(
    requested: str | torch.dtype | None, stored: str, device: torch.device, num_parameters: int = 0
) -> torch.dtype:
    """The compute dtype: as requested; for "auto"/None the stored dtype on CUDA, and float32 on CPUs.

    On CPU, float32 is the fast choice even where bf16 is native: decoding is bound by the matrix-vector
    product, which streamed fp32 weights at 21 GB/s but bf16 at 5.9 GB/s on an AVX-512-BF16 Xeon, and
    without AVX-512-BF16 bf16 is emulated ~500x slower. A half-precision checkpoint whose fp32 copy would not
    fit in free memory stays in bf16 where the CPU computes it natively.
    """
    if requested not in (None, "auto"):
        return parse_dtype(requested)
    want = parse_dtype(stored) if stored in _DTYPES else torch.float32
    if device.type == "cuda":
        return torch.float16 if want == torch.bfloat16 and not torch.cuda.is_bf16_supported() else want
    if want != torch.float32 and cpu_has_fast_bf16():
        free = available_memory_bytes()
        if free is not None and num_parameters * 4 > 0.8 * free:
            return torch.bfloat16
    return torch.float32


# ---- reading ------------------------------------------------------------------------------------


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a model folder, in index order."""
    for index_name in (SAFETENSORS_INDEX, TORCH_BIN_INDEX):
        index = folder / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as bad:
                raise PuyuError(f"{index}: not a valid weight index ({bad})") from None
            files = [folder / name for name in dict.fromkeys(weight_map.values())]
            for file in files:
                if not file.is_file():
                    raise PuyuError(f"{index}: lists {file.name}, which is missing")
            return files
    for single in (SAFETENSORS, TORCH_BIN):
        if (folder / single).is_file():
            return [folder / single]
    raise PuyuError(f"{folder}: no weights found (expected {SAFETENSORS}, {SAFETENSORS_INDEX} or {TORCH_BIN})")


def iter_tensors(file: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs of one weight file, read lazily."""
    if file.suffix == ".safetensors":
        try:
            with safe_open(file, framework="pt", device="cpu") as handle:
                for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                    yield name, handle.get_tensor(name)
        except SafetensorError as bad:
            raise PuyuError(f"{file}: unreadable safetensors file ({one_line(bad)})") from None
        return
    try:
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except Exception as bad:  # torch raises many types for a corrupt or unsafe pickle
        raise PuyuError(f"{file}: unreadable PyTorch weights ({one_line(bad)[:200]})") from None
    if not isinstance(state, dict):
        raise PuyuError(f"{file}: expected a state dict, found {type(state).__name__}")
    yield from state.items()


def _set_parameter(model: nn.Module, name: str, value: torch.Tensor) -> None:
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    setattr(module, attr, nn.Parameter(value, requires_grad=getattr(module, attr).requires_grad))


def load_model(
    path: str | os.PathLike[str],
    dtype: str | torch.dtype | None = "auto",
    device: str | torch.device = "cpu",
) -> CausalLM:
    """Load an HF model folder of any supported family.

    Args:
        path: folder with config.json and weights (single or sharded safetensors, or pytorch_model.bin),
            or a .gguf file (its tensors dequantized; see `puyu.model.gguf`).
        dtype: compute dtype; "auto" keeps the stored dtype where the device computes it fast, else float32.
        device: where the weights go.

    Returns:
        The model in eval mode.
    """
    folder = Path(path)
    if folder.is_file() and folder.suffix.lower() == ".gguf":
        from puyu.model.gguf.importer import load_gguf_model

        return load_gguf_model(folder, dtype=dtype, device=device)
    if not folder.is_dir():
        raise PuyuError(f"{folder}: not a model folder")
    config = ModelConfig.from_pretrained(folder)
    target_device = parse_device(device)
    target_dtype = resolve_dtype(dtype, config.torch_dtype, target_device, config.num_parameters())
    with torch.device("meta"):
        model = CausalLM(config)
    wanted = checkpoint_shapes(config)
    quantized = None
    if "quantization_config" in config.extra:  # weight-only int8/int4: linear layers become quantized modules
        from puyu.quant.loading import QuantizedLoader, QuantSpec

        spec = QuantSpec.from_config(config.extra["quantization_config"], source=str(folder / "config.json"))
        quantized = QuantizedLoader(model, spec, target_device)
        wanted = quantized.plain_names(wanted)
    seen: set[str] = set()
    unexpected: list[str] = []
    for file in weight_files(folder):
        for name, tensor in iter_tensors(file):
            if is_ignored(name) or (config.tie_word_embeddings and name in ("lm_head.weight", "output.weight")):
                continue  # some tied checkpoints store the shared matrix twice
            if quantized is not None and quantized.take(name, tensor):
                continue
            if name not in wanted:
                unexpected.append(name)
                continue
            if tuple(tensor.shape) != wanted[name]:
                raise PuyuError(
                    f"{file}: tensor {name} has shape {tuple(tensor.shape)}, config.json implies {wanted[name]}"
                )
            seen.add(name)
            for internal, value in to_internal(name, tensor, config):
                _set_parameter(model, internal, value.to(device=target_device, dtype=target_dtype))
    if unexpected:
        raise PuyuError(f"{folder}: unexpected tensors {_few(unexpected)} for a {config.family} model")
    missing = [name for name in wanted if name not in seen]
    if missing:
        raise PuyuError(f"{folder}: missing tensors {_few(missing)}")
    model.tie_weights()
    if quantized is not None:
        quantized.finish(folder)
    model.rotary.materialize(target_device)
    return model.eval()


def _few(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


# ---- writing ------------------------------------------------------------------------------------


def parse_size(size: int | str) -> int:
    """'5GB' / '500MB' / '2GiB' / int → bytes."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)?\s*", size, flags=re.IGNORECASE)
    if not match:
        raise PuyuError(f"invalid size {size!r} (e.g. 5GB, 500MB)")
    number, unit = float(match.group(1)), (match.group(2) or "B").upper()
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}[unit]  # fmt: skip
    return int(number * scale)


def save_model(
    model: CausalLM,
    path: str | os.PathLike[str],
    family: Family | None = None,
    dtype: str | torch.dtype | None = None,
    max_shard_size: int | str = "5GB",
) -> Path:
    """Write an HF model folder (config.json, generation_config.json, safetensors shards).

    Args:
        model: the model to save.
        path: output folder (created; files already there are replaced atomically, stale shards removed).
        family: checkpoint layout; default the model's own family.
        dtype: storage dtype; default the config's `torch_dtype`.
        max_shard_size: shard above this size (bytes or "5GB").
    """
    config = model.config
    family = family or config.family
    store_dtype = parse_dtype(dtype or config.torch_dtype)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: p.detach() for name, p in model.state_dict().items()}
    write_weights(folder, from_internal(state, config, family), store_dtype, max_shard_size)
    hf_config = config.replace(torch_dtype=dtype_name(store_dtype)).to_hf(family)
    atomic_write_text(folder / "config.json", json.dumps(hf_config, indent=2) + "\n")
    write_generation_config(folder, config)
    if family == "internlm2":  # config.json's auto_map names these files
        write_remote_code(folder)
    return folder


def write_weights(
    folder: Path,
    tensors: Iterable[tuple[str, torch.Tensor]],
    store_dtype: torch.dtype,
    max_shard_size: int | str = "5GB",
) -> None:
    """Write (checkpoint name, tensor) pairs as safetensors shards (+ index when sharded), atomically;
    stale shards and PyTorch weight files of an earlier save are removed."""
    limit = parse_size(max_shard_size)
    shards: list[dict[str, torch.Tensor]] = [{}]
    shard_bytes = 0
    total = 0
    for name, tensor in tensors:
        value = tensor.to(device="cpu", dtype=store_dtype).contiguous()
        size = value.numel() * value.element_size()
        if shards[-1] and shard_bytes + size > limit:
            shards.append({})
            shard_bytes = 0
        shards[-1][name] = value
        shard_bytes += size
        total += size

    names = [SAFETENSORS] if len(shards) == 1 else [
        f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))
    ]  # fmt: skip
    for shard, name in zip(shards, names, strict=True):
        with atomic_path(folder / name) as tmp:
            save_file(shard, str(tmp), metadata={"format": "pt"})
    if len(shards) > 1:
        index = {
            "metadata": {"total_size": total},
            "weight_map": {t: n for shard, n in zip(shards, names, strict=True) for t in shard},
        }
        atomic_write_text(folder / SAFETENSORS_INDEX, json.dumps(index, indent=2) + "\n")
    for stale in folder.glob("model*.safetensors*"):
        if stale.name not in names and not (len(shards) > 1 and stale.name == SAFETENSORS_INDEX):
            stale.unlink()
    for stale_bin in (TORCH_BIN, TORCH_BIN_INDEX):
        (folder / stale_bin).unlink(missing_ok=True)
