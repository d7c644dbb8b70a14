"""InternVL model folders: load and save either layout (HF-native `internvl` or the original `InternVLChatModel`).

Loading builds the model on the meta device and streams tensors one at a time, as `load_model` does for
text models; the text part may be any puyu family in the original layout (InternLM2's fused `wqkv`
included) and Llama or Qwen2 in the HF-native one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from puyu.errors import PuyuError
from puyu.io import atomic_write_text
from puyu.model.checkpoint import (
    _few,
    _set_parameter,
    dtype_name,
    iter_tensors,
    parse_device,
    parse_dtype,
    resolve_dtype,
    weight_files,
    write_weights,
)
from puyu.model.vision.config import Layout, VLMConfig
from puyu.model.vision.model import VisionLanguageModel
from puyu.model.vision.weights import from_internal, to_internal
from puyu.model.weight_names import is_ignored

_TIED_NAMES = ("lm_head.weight", "language_model.lm_head.weight", "language_model.output.weight")


def load_vlm(
    path: str | os.PathLike[str],
    dtype: str | torch.dtype | None = "auto",
    device: str | torch.device = "cpu",
) -> VisionLanguageModel:
    """Load an InternVL model folder of either layout.

    Args:
        path: folder with config.json and weights.
        dtype: compute dtype; "auto" as for `load_model`.
        device: where the weights go.

    Returns:
        The model in eval mode.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise PuyuError(f"{folder}: not a model folder")
    config = VLMConfig.from_pretrained(folder)
    target_device = parse_device(device)
    target_dtype = resolve_dtype(dtype, config.text.torch_dtype, target_device, config.text.num_parameters())
    with torch.device("meta"):
        model = VisionLanguageModel(config)
    tied = config.text.tie_word_embeddings
    wanted = {name: tuple(p.shape) for name, p in model.named_parameters()}
    seen: set[str] = set()
    unexpected: list[str] = []
    for file in weight_files(folder):
        for name, tensor in iter_tensors(file):
            if is_ignored(name) or (tied and name in _TIED_NAMES):
                continue
            pairs = to_internal(name, tensor, config, config.layout)
            if not pairs or any(internal not in wanted for internal, _ in pairs):
                unexpected.append(name)
                continue
            for internal, value in pairs:
                if tuple(value.shape) != wanted[internal]:
                    raise PuyuError(
                        f"{file}: tensor {name} has shape {tuple(tensor.shape)}, which does not fit config.json"
                    )
                seen.add(internal)
                _set_parameter(model, internal, value.to(device=target_device, dtype=target_dtype))
    if unexpected:
        raise PuyuError(f"{folder}: unexpected tensors {_few(unexpected)} for an InternVL ({config.layout}) model")
    missing = [name for name in wanted if name not in seen and not (tied and name == "language_model.lm_head.weight")]
    if missing:
        raise PuyuError(f"{folder}: missing tensors {_few(missing)}")
    model.tie_weights()
    model.language_model.rotary.materialize(target_device)
    return model.eval()


def save_vlm(
    model: VisionLanguageModel,
    path: str | os.PathLike[str],
    layout: Layout | None = None,
    dtype: str | torch.dtype | None = None,
    max_shard_size: int | str = "5GB",
) -> Path:
    """Write an InternVL model folder.

    Args:
        model: the model.
        path: output folder (files replaced atomically).
        layout: "hf" (transformers' `InternVLForConditionalGeneration`) or "original" (`InternVLChatModel`);
            default the layout it was loaded from.
        dtype: storage dtype; default the text config's `torch_dtype`.
        max_shard_size: shard above this size.
    """
    config = model.config
    layout = layout or config.layout
    store_dtype = parse_dtype(dtype or config.text.torch_dtype)
    folder = Path(path)
    raw_config = config.replace(text=config.text.replace(torch_dtype=dtype_name(store_dtype))).to_hf(layout)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: p.detach() for name, p in model.state_dict().items()}
    write_weights(folder, from_internal(state, config, layout), store_dtype, max_shard_size)
    atomic_write_text(folder / "config.json", json.dumps(raw_config, indent=2) + "\n")
    text = config.text
    generation = {"bos_token_id": text.bos_token_id, "eos_token_id": text.eos_token_id}
    atomic_write_text(folder / "generation_config.json", json.dumps(generation, indent=2) + "\n")
    return folder
