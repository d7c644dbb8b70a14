"""`image_url` content parts of chat requests: shape checks before any image is fetched or decoded.

The images themselves (data URLs; http(s) only when the server enables it; size and pixel limits) are
read by `puyu.model.vision`; a mistake anywhere becomes a PuyuError, which the server answers with a 400.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from puyu.errors import PuyuError
from puyu.model.vision.prompt import IMAGE_PART_TYPES, has_images
from puyu.serve.schemas import ImageURLPart

__all__ = ["check_image_parts", "has_images"]


def check_image_parts(messages: Sequence[Mapping[str, Any]]) -> None:
    """Raise PuyuError for an `image_url` part that does not have OpenAI's shape
    (`{"type": "image_url", "image_url": {"url": str, "detail"?: str}}`)."""
    for index, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for number, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") not in IMAGE_PART_TYPES:
                continue
            if part.get("type") != "image_url":  # in-process parts may name local files: never over HTTP
                raise PuyuError(f"message {index}: content part {number}: use type 'image_url' for images")
            try:
                ImageURLPart.model_validate(part)
            except ValidationError as bad:
                problem = bad.errors()[0]
                where = ".".join(str(p) for p in problem["loc"])
                raise PuyuError(f"message {index}: content part {number}: {where}: {problem['msg']}") from None
