"""Chat messages with images → prompt token ids with image placeholder runs, and the images' spans.

Image parts (`{"type": "image_url", "image_url": {"url": ...}}`, or `{"type": "image", "image": ...}` in
process) are cut out of the messages before the chat template sees them: each becomes a private sentinel
string, the rendered text is split at the sentinels, each text piece is tokenized on its own, and every
image becomes `<img>` + `<IMG_CONTEXT>` × (tiles · tokens per tile) + `</img>` in ids. The sentinel never
reaches the tokenizer, and a placeholder token typed in message text is refused, so user text cannot
forge or shift an image.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from puyu.errors import PuyuError
from puyu.model.vision.config import IMAGE_CONTEXT, IMAGE_END, IMAGE_START
from puyu.model.vision.images import ImageLimits, LoadedImage, load_image, load_url
from puyu.model.vision.processor import ImageProcessor

IMAGE_PART_TYPES = ("image_url", "image", "input_image")


@dataclass(eq=False)
class ImageSpan:
    """One image in a prompt: its placeholder run starts at `offset` and holds `length` tokens.

    `pixels` ([tiles, 3, S, S], float32) are kept until the request ends, so the embeddings can be
    recomputed after a cache eviction or a preemption.
    """

    digest: str
    offset: int
    length: int
    pixels: np.ndarray


@dataclass(frozen=True)
class ImageTokens:
    """The ids of the image tokens in a model's vocabulary."""

    start: int
    context: int
    end: int

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, context_id: int | None = None) -> ImageTokens:
        ids = [tokenizer.token_to_id(t) for t in (IMAGE_START, IMAGE_CONTEXT, IMAGE_END)]
        if context_id is not None:
            ids[1] = context_id
        if None in ids:
            raise PuyuError(f"the tokenizer lacks the image tokens {IMAGE_START}, {IMAGE_CONTEXT}, {IMAGE_END}")
        return cls(*ids)  # type: ignore[arg-type]


def has_images(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any message carries an image content part."""
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list) and any(
            isinstance(part, Mapping) and part.get("type") in IMAGE_PART_TYPES for part in content
        ):
            return True
    return False


def image_reference(part: Mapping[str, Any], where: str) -> Any:
    """The image a content part points at (URL string, path, bytes or PIL image)."""
    kind = part.get("type")
    value = part.get(kind) if kind in ("image", "input_image") else part.get("image_url")
    if kind == "input_image" and value is None:
        value = part.get("image_url")
    if isinstance(value, Mapping):
        value = value.get("url")
    if value is None or (isinstance(value, str) and not value):
        raise PuyuError(f"{where}: the image part has no url")
    return value


def split_images(
    messages: Sequence[Mapping[str, Any]],
    loader: Callable[[Mapping[str, Any], str], LoadedImage],
    max_images: int,
) -> tuple[list[dict[str, Any]], list[LoadedImage], str]:
    """Messages with image parts replaced by sentinel text, the loaded images in order, and the sentinel."""
    sentinel = f"\ue000image-{secrets.token_hex(8)}\ue001"
    out: list[dict[str, Any]] = []
    images: list[LoadedImage] = []
    for index, message in enumerate(messages):
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            out.append(message)  # type: ignore[arg-type]
            continue
        parts: list[Any] = []
        for number, part in enumerate(content):
            if isinstance(part, Mapping) and part.get("type") in IMAGE_PART_TYPES:
                where = f"message {index}: content part {number}"
                if message.get("role") != "user":
                    raise PuyuError(f"{where}: images are only supported in user messages")
                if len(images) >= max_images:
                    raise PuyuError(f"too many images: at most {max_images} per request")
                images.append(loader(part, where))
                parts.append({"type": "text", "text": sentinel + "\n"})
            else:
                parts.append(part)
        out.append({**message, "content": parts})
    return out, images, sentinel


def build_prompt(
    rendered: str,
    sentinel: str,
    images: Sequence[LoadedImage],
    processor: ImageProcessor,
    tokens_per_tile: int,
    image_tokens: ImageTokens,
    encode: Callable[[str], list[int]],
) -> tuple[list[int], list[ImageSpan]]:
    """Token ids of `rendered` with each sentinel replaced by its image's placeholder run, and the spans."""
    pieces = rendered.split(sentinel)
    if len(pieces) != len(images) + 1:
        raise PuyuError("the chat template dropped or repeated an image; it cannot be used with images")
    ids: list[int] = []
    spans: list[ImageSpan] = []
    for i, piece in enumerate(pieces):
        text_ids = encode(piece) if piece else []
        if image_tokens.context in text_ids:
            raise PuyuError(f"message text contains the image placeholder token {IMAGE_CONTEXT}")
        ids.extend(text_ids)
        if i == len(images):
            break
        pixels = processor(images[i].image)
        length = pixels.shape[0] * tokens_per_tile
        ids.append(image_tokens.start)
        spans.append(ImageSpan(images[i].digest, len(ids), length, pixels))
        ids.extend([image_tokens.context] * length)
        ids.append(image_tokens.end)
    return ids, spans


def default_loader(limits: ImageLimits) -> Callable[[Mapping[str, Any], str], LoadedImage]:
    """Loads an image part: `image_url` parts only from data or http(s) URLs (what a server accepts), in-process
    `image` parts also from PIL images, bytes and local files."""

    def load(part: Mapping[str, Any], where: str) -> LoadedImage:
        reference = image_reference(part, where)
        if part.get("type") == "image_url":
            return load_url(reference, limits, where)
        return load_image(reference, limits, where)

    return load
