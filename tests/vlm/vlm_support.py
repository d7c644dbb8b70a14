"""Tiny random InternVL models written by transformers, for the vision tests."""

from __future__ import annotations

from pathlib import Path

import torch

IMAGE_TOKEN_ID = 120
TEXT_SHAPE = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4)
VISION_SHAPE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, patch_size=14)


def randomise(model: torch.nn.Module, seed: int) -> None:
    # Larger-than-default weights give peaked distributions, so greedy choices are not near-ties.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3 + (1.0 if param.ndim == 1 else 0.0))


def hf_internvl(
    text_family: str = "qwen2",
    kv_heads: int = 2,
    tied: bool = False,
    image_size: int = 56,
    feature_layer: int = -1,
    seed: int = 0,
    vocab: int | None = None,
    image_token_id: int = IMAGE_TOKEN_ID,
    **vision: object,
):
    """transformers' `InternVLForConditionalGeneration` on a tiny random config (eval mode, fp32)."""
    import transformers

    text = dict(TEXT_SHAPE, model_type=text_family, num_key_value_heads=kv_heads, tie_word_embeddings=tied)
    text["max_position_embeddings"] = 512
    if vocab is not None:
        text["vocab_size"] = vocab
    config = transformers.InternVLConfig(
        vision_config=dict(VISION_SHAPE, image_size=image_size, **vision),
        text_config=text,
        image_token_id=image_token_id,
        image_seq_length=(image_size // 28) ** 2,
        vision_feature_layer=feature_layer,
        tie_word_embeddings=tied,
    )
    model = transformers.InternVLForConditionalGeneration(config)
    randomise(model, seed)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval()


def image_prompt(tokens_per_image: list[int], seed: int = 1, text: int = 5) -> torch.Tensor:
    """Token ids [1, T]: random text, then for each image its placeholder run, then more text."""
    generator = torch.Generator().manual_seed(seed)
    pieces = [torch.randint(3, 100, (text,), generator=generator)]
    for count in tokens_per_image:
        pieces.append(torch.full((count,), IMAGE_TOKEN_ID))
        pieces.append(torch.randint(3, 100, (text,), generator=generator))
    return torch.cat(pieces)[None]


def pixels(tiles: int, size: int = 56, seed: int = 2) -> torch.Tensor:
    return torch.randn(tiles, 3, size, size, generator=torch.Generator().manual_seed(seed))


def save_hf(model, folder: Path) -> Path:
    model.save_pretrained(folder)
    return folder


def hf_vlm_folder(folder: Path, text_family: str = "qwen2", seed: int = 0, max_tiles: int = 4) -> Path:
    """A transformers-written InternVL folder that puyu serves: a byte-level tokenizer with the image tokens,
    the model sized to it, and a preprocessor config (56-pixel tiles of 4 image tokens)."""
    import json

    from puyu.model.init import FAMILY_CHAT_TOKENS
    from puyu.model.vision.config import IMAGE_CONTEXT, IMAGE_END, IMAGE_START
    from puyu.model.vision.processor import ImageProcessor
    from puyu.tokenizer import byte_level_tokenizer

    tokenizer = byte_level_tokenizer(FAMILY_CHAT_TOKENS[text_family])
    _, context, _ = tokenizer.add_special_tokens([IMAGE_START, IMAGE_CONTEXT, IMAGE_END])
    model = hf_internvl(text_family, seed=seed, vocab=tokenizer.vocab_size, image_token_id=context)
    model.config.text_config.eos_token_id = tokenizer.eos_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    processor = ImageProcessor(size=56, max_tiles=max_tiles)
    (folder / "preprocessor_config.json").write_text(json.dumps(processor.to_hf()))
    return folder
