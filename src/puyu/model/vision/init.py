"""Random InternVL folders: a tiny vision model for tests, demos and benchmarks (nothing can be downloaded here).

The folder is complete: weights and config.json in the chosen layout, a byte-level tokenizer with the image
tokens added, and a preprocessor_config.json, so the engine, the server and `puyu chat --image` load it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from puyu.io import atomic_write_text
from puyu.model.checkpoint import parse_dtype
from puyu.model.config import ModelConfig
from puyu.model.init import FAMILY_CHAT_TOKENS, init_weights
from puyu.model.vision.checkpoint import save_vlm
from puyu.model.vision.config import IMAGE_CONTEXT, IMAGE_END, IMAGE_START, Layout, VisionConfig, VLMConfig
from puyu.model.vision.model import VisionLanguageModel
from puyu.model.vision.processor import PREPROCESSOR_CONFIG, ImageProcessor

TINY_VISION = VisionConfig(
    hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, image_size=56, patch_size=14
)


@torch.no_grad()
def random_vlm(config: VLMConfig, seed: int = 0, std: float = 0.02) -> VisionLanguageModel:
    """A freshly initialised InternVL model (fp32, CPU): the text part as `init_weights` does it, the vision
    part with normal matrices, unit norms and the config's layer scale."""
    model = VisionLanguageModel(config)
    init_weights(model.language_model, seed=seed, std=std)
    model.language_model.rotary.materialize(torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed + 1)
    for name, param in model.encoder.named_parameters():
        module = model.encoder.get_submodule(name.rpartition(".")[0])
        if name.endswith(("lambda_1", "lambda_2")):
            param.fill_(config.vision.layer_scale_init)
        elif name.endswith(".bias"):
            param.zero_()
        elif param.ndim == 1 or isinstance(module, nn.LayerNorm):
            param.fill_(1.0)
        else:
            param.copy_(torch.empty(param.shape).normal_(0.0, std, generator=generator))
    return model.eval()


def init_vlm_folder(
    out: str | os.PathLike[str],
    text: ModelConfig | None = None,
    vision: VisionConfig = TINY_VISION,
    *,
    layout: Layout = "hf",
    max_tiles: int = 4,
    seed: int = 0,
    dtype: str = "float32",
) -> Path:
    """Write a random InternVL folder.

    Args:
        out: output folder.
        text: the language model's shape; default the `qwen2-tiny` preset (vocab sized to the tokenizer).
        vision: the ViT's shape; default a 2-layer ViT on 56-pixel tiles (4 image tokens per tile).
        layout: "hf" or "original".
        max_tiles: dynamic tiling bound written to the processor config.
        seed: initialisation seed.
        dtype: storage dtype.
    """
    from puyu.tokenizer import byte_level_tokenizer

    text = text or ModelConfig.from_name("qwen2-tiny")
    tokenizer = byte_level_tokenizer(FAMILY_CHAT_TOKENS[text.family])
    _, context_id, _ = tokenizer.add_special_tokens([IMAGE_START, IMAGE_CONTEXT, IMAGE_END])
    text = text.replace(
        vocab_size=max(text.vocab_size, tokenizer.vocab_size),
        bos_token_id=tokenizer.bos_id,
        eos_token_id=tokenizer.eos_id,
        pad_token_id=tokenizer.pad_id,
        torch_dtype=dtype,
    )
    config = VLMConfig(vision=vision, text=text, image_token_id=context_id, max_tiles=max_tiles, layout=layout)
    model = random_vlm(config, seed=seed).to(parse_dtype(dtype))
    folder = save_vlm(model, out, layout=layout)
    tokenizer.save_pretrained(folder)
    processor = ImageProcessor(size=vision.image_size, max_tiles=max_tiles)
    atomic_write_text(folder / PREPROCESSOR_CONFIG, json.dumps(processor.to_hf(), indent=2) + "\n")
    return folder
