"""puyu / HF model folder → one GGUF file that llama.cpp, Ollama and LM Studio run.

Tensors are written with llama.cpp's names and q/k row order for the folder's family (`internlm2`'s
fused wqkv is split into q, k, v as llama.cpp's own converter does); 1-D tensors (norms, biases) stay F32
as llama.cpp keeps them; every 2-D weight goes in the requested type, quantized by the gguf package.
A weight-only int8/int4 puyu folder is dequantized first and then re-quantized: its GGUF carries both
roundings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from puyu.errors import PuyuError
from puyu.io import atomic_path, atomic_write_text
from puyu.model.checkpoint import load_model
from puyu.model.config import ModelConfig
from puyu.model.decoder import CausalLM
from puyu.model.gguf.hparams import write_hparams
from puyu.model.gguf.reader import gguf_module
from puyu.model.gguf.tensor_names import to_gguf_name, to_rotary_pairs
from puyu.model.weight_names import internal_shapes

# --type value → (GGML tensor type name, llama.cpp file type name)
EXPORT_TYPES: dict[str, tuple[str, str]] = {
    "f32": ("F32", "ALL_F32"),
    "f16": ("F16", "MOSTLY_F16"),
    "bf16": ("BF16", "MOSTLY_BF16"),
    "q8_0": ("Q8_0", "MOSTLY_Q8_0"),
    "q4_0": ("Q4_0", "MOSTLY_Q4_0"),
}


@dataclass
class ExportResult:
    """What `export_gguf` wrote.

    Attributes:
        path: The .gguf file.
        modelfile: The Ollama Modelfile, when asked for.
        notes: What the file does not reproduce exactly (dequantized sources, tokenizer rules, fallbacks).
    """

    path: Path
    modelfile: Path | None = None
    notes: list[str] = field(default_factory=list)


def dense_state(model: CausalLM) -> dict[str, torch.Tensor]:
    """Every parameter of puyu's model as a float32 tensor, weight-only quantized layers dequantized."""
    from puyu.quant.weight_only import QuantLinear

    state: dict[str, torch.Tensor] = {}
    for module_name, module in model.named_modules():
        if isinstance(module, QuantLinear):
            state[f"{module_name}.weight"] = module.dequantize()
            if module.bias is not None:
                state[f"{module_name}.bias"] = module.bias.detach()
    for name, param in model.named_parameters():
        state.setdefault(name, param.detach())
    return {name: value.float().cpu() for name, value in state.items()}


def _encode(values: np.ndarray, type_name: str) -> tuple[np.ndarray, object]:
    gguf = gguf_module()
    qtype = gguf.GGMLQuantizationType[type_name]
    return gguf.quants.quantize(values, qtype), qtype


def export_gguf(
    model_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    qtype: str = "f16",
    ollama: bool = False,
) -> ExportResult:
    """Write a model folder as one GGUF file.

    Args:
        model_dir: An HF model folder (InternLM2, Llama or Qwen2; plain or puyu int8/int4) with its tokenizer.
        out: The .gguf file; default `<model_dir>/<folder name>-<type>.gguf`.
        qtype: f32, f16, bf16, q8_0 or q4_0.
        ollama: Also write an Ollama `Modelfile` beside the file.

    Returns:
        The paths written and notes on what is not exact.
    """
    if qtype not in EXPORT_TYPES:
        raise PuyuError(f"unknown GGUF type {qtype!r} (known: {', '.join(EXPORT_TYPES)})")
    from puyu.tokenizer.gguf_vocab import vocab_from_tokenizer

    folder = Path(model_dir)
    config = ModelConfig.from_pretrained(folder)
    target = Path(out) if out is not None else folder / f"{folder.resolve().name}-{qtype}.gguf"
    notes: list[str] = []
    vocab, tokenizer_notes = vocab_from_tokenizer(folder, config.vocab_size)
    notes += tokenizer_notes
    if "quantization_config" in config.extra:
        notes.append("the source is weight-only quantized: its weights were dequantized, then written as " + qtype)
    if config.rope_scaling is not None and config.rope_scaling.type == "dynamic":
        notes.append("dynamic (NTK) RoPE scaling has no GGUF key: llama.cpp runs the model unscaled past its context")
    state = dense_state(load_model(folder, dtype="float32"))

    gguf = gguf_module()
    tensor_type, file_type = EXPORT_TYPES[qtype]
    writer = gguf.GGUFWriter(None, config.family)
    writer.add_name(folder.resolve().name)
    write_hparams(writer, config)
    writer.add_file_type(int(gguf.LlamaFileType[file_type]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    vocab.write(writer)
    fallback: list[str] = []
    for name in internal_shapes(config):
        value = to_rotary_pairs(name, state[name], config, config.family).numpy()
        kind = "F32" if value.ndim == 1 else tensor_type
        block = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[kind]][0]
        if value.shape[-1] % block:
            kind = "F16"
            fallback.append(to_gguf_name(name))
        data, ggml_type = _encode(np.ascontiguousarray(value, dtype=np.float32), kind)
        writer.add_tensor(to_gguf_name(name), data, raw_dtype=ggml_type)
    if fallback:
        notes.append(f"rows not a multiple of the {qtype} block, written as F16: {', '.join(fallback[:4])}")
    with atomic_path(target) as tmp:
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    result = ExportResult(path=target, notes=notes)
    if ollama:
        result.modelfile = write_modelfile(target, vocab.eos_id and vocab.tokens[vocab.eos_id], vocab.chat_template)
    return result


# ChatML, the one chat format whose Go template Ollama needs spelled out here; other templates are read by
# Ollama from the file's own tokenizer.chat_template.
_CHATML_GO_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)


def write_modelfile(gguf_path: Path, eos_token: str | None, chat_template: str | None) -> Path:
    """An Ollama Modelfile beside `gguf_path` (`ollama create NAME -f Modelfile`)."""
    lines = [f"FROM ./{gguf_path.name}"]
    stops = [eos_token] if eos_token else []
    if chat_template and "<|im_start|>" in chat_template:
        lines.append(f'TEMPLATE """{_CHATML_GO_TEMPLATE}"""')
        stops.append("<|im_end|>")
    lines += [f'PARAMETER stop "{stop}"' for stop in dict.fromkeys(stops)]
    path = gguf_path.parent / "Modelfile"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
