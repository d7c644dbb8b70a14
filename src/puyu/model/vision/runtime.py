"""VisionRuntime: what the serving engine needs of a vision model, in one object.

It turns chat messages with images into prompt ids and image spans (through the chat template, the image
processor and the tokenizer), and gives the embeddings of an image by its pixel hash: the encoder runs
once per distinct image and its output stays in a small LRU cache, so a repeated image costs nothing and
its placeholder tokens hash the same in the prefix cache.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from puyu.model.vision.encoder import ImageEncoder
from puyu.model.vision.images import ImageLimits
from puyu.model.vision.processor import ImageProcessor
from puyu.model.vision.prompt import ImageSpan, ImageTokens, build_prompt, default_loader, split_images


class VisionRuntime:
    """Image handling for one loaded vision model.

    Args:
        encoder: the vision tower + projector (on the model's device and dtype).
        processor: the image processor.
        image_tokens: ids of `<img>`, `<IMG_CONTEXT>`, `</img>`.
        limits: what an image may be.
        cache_images: distinct images whose embeddings are kept.
    """

    def __init__(
        self,
        encoder: ImageEncoder,
        processor: ImageProcessor,
        image_tokens: ImageTokens,
        limits: ImageLimits | None = None,
        cache_images: int = 32,
    ) -> None:
        self.encoder = encoder
        self.processor = processor
        self.image_tokens = image_tokens
        self.limits = limits or ImageLimits()
        self.cache_images = cache_images
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.encoder_runs = 0
        self.cache_hits = 0

    @classmethod
    def for_folder(
        cls, folder: str | os.PathLike[str], encoder: ImageEncoder, tokenizer: Any, limits: ImageLimits | None = None
    ) -> VisionRuntime:
        """The runtime of a loaded model folder: its preprocessor config and its tokenizer's image tokens."""
        config = encoder.config
        defaults = {
            "size": config.vision.image_size,
            "min_tiles": config.min_tiles,
            "max_tiles": config.max_tiles,
            "use_thumbnail": config.use_thumbnail,
            "dynamic": config.dynamic_tiles,
        }
        processor = ImageProcessor.from_pretrained(Path(folder), defaults)
        return cls(encoder, processor, ImageTokens.from_tokenizer(tokenizer, config.image_token_id), limits)

    @property
    def tokens_per_tile(self) -> int:
        return self.encoder.config.tokens_per_tile

    def prompt(
        self, messages: Sequence[Mapping[str, Any]], render: Any, encode: Any
    ) -> tuple[list[int], list[ImageSpan]]:
        """Prompt ids and image spans of a conversation.

        Args:
            messages: OpenAI-style messages; user content may hold image parts.
            render: messages → rendered prompt text (the chat template, generation prompt added).
            encode: text → token ids (no special tokens added).
        """
        plain, images, sentinel = split_images(messages, default_loader(self.limits), self.limits.max_images)
        return build_prompt(
            render(plain), sentinel, images, self.processor, self.tokens_per_tile, self.image_tokens, encode
        )

    @torch.inference_mode()
    def embeddings(self, span: ImageSpan) -> torch.Tensor:
        """Embeddings [span.length, width] of an image: from the cache, else from the encoder (then cached)."""
        cached = self._cache.get(span.digest)
        if cached is not None and cached.shape[0] == span.length:
            self._cache.move_to_end(span.digest)
            self.cache_hits += 1
            return cached
        pixels = torch.from_numpy(span.pixels).to(device=self.encoder.device, dtype=self.encoder.dtype)
        features = self.encoder(pixels)
        self.encoder_runs += 1
        features = features.reshape(-1, features.shape[-1])
        self._cache[span.digest] = features
        while len(self._cache) > self.cache_images:
            self._cache.popitem(last=False)
        return features
