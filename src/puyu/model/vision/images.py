"""Reading untrusted images: bytes, files, data URLs and (when allowed) http(s) URLs, within limits.

Every image is checked before its pixels are decoded (byte size, format, width × height), then decoded
fully so a truncated file fails here and not inside the model. Its `digest` hashes the decoded RGB
pixels, so the same picture sent as PNG or as a data URL is one cache entry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from puyu.errors import PuyuError

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.I)


@dataclass(frozen=True)
class ImageLimits:
    """What an image may be.

    Args:
        max_bytes: encoded size.
        max_pixels: width × height (checked from the header, before decoding).
        max_images: images in one request.
        allow_urls: fetch http(s) URLs (off by default: a server must not fetch arbitrary addresses).
        url_timeout: seconds for one fetch.
    """

    max_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    max_images: int = 8
    allow_urls: bool = False
    url_timeout: float = 10.0


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded RGB image and the hash of its pixels (hex)."""

    image: Image.Image
    digest: str

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def decode_image(data: bytes, limits: ImageLimits | None = None, source: str = "image") -> LoadedImage:
    """Decode encoded image bytes; PuyuError (naming `source`) for anything that is not a whole, allowed image."""
    limits = limits or ImageLimits()
    if len(data) > limits.max_bytes:
        raise PuyuError(f"{source}: {len(data)} bytes, more than the limit of {limits.max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = image.size
            if width <= 0 or height <= 0:
                raise PuyuError(f"{source}: empty image")
            if width * height > limits.max_pixels:
                raise PuyuError(f"{source}: {width}x{height} pixels, more than the limit of {limits.max_pixels}")
            image.load()
            rgb = to_rgb(image)
    except PuyuError:
        raise
    except UnidentifiedImageError:
        raise PuyuError(f"{source}: not an image (supported: {', '.join(FORMATS)})") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as bad:
        raise PuyuError(f"{source}: unreadable image ({type(bad).__name__}: {str(bad)[:120]})") from None
    return _loaded(rgb)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels, transparency composited onto white (as transformers' image processors do)."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def _loaded(rgb: Image.Image) -> LoadedImage:
    digest = hashlib.blake2b(rgb.tobytes(), digest_size=16, person=b"puyu-image")
    digest.update(f"{rgb.width}x{rgb.height}".encode())
    return LoadedImage(rgb, digest.hexdigest())


def decode_data_url(url: str, limits: ImageLimits | None = None, source: str = "image") -> LoadedImage:
    """Decode a `data:image/...;base64,...` URL."""
    limits = limits or ImageLimits()
    match = _DATA_URL.match(url)
    if not match or not match.group("b64"):
        raise PuyuError(f"{source}: expected a base64 data URL (data:image/png;base64,...)")
    mime = (match.group("mime") or "").lower()
    if mime and not mime.startswith("image/"):
        raise PuyuError(f"{source}: data URL of type {mime!r}, not an image")
    body = url[match.end() :]
    if len(body) > limits.max_bytes * 4 // 3 + 4:
        raise PuyuError(f"{source}: more than the limit of {limits.max_bytes} bytes")
    try:
        data = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise PuyuError(f"{source}: the data URL is not valid base64") from None
    return decode_image(data, limits, source)


def fetch_url(url: str, limits: ImageLimits, source: str = "image") -> LoadedImage:
    """Download an http(s) image (only when `limits.allow_urls`), reading at most `max_bytes` + 1 bytes."""
    if not url.lower().startswith(("http://", "https://")):
        raise PuyuError(f"{source}: only http(s) and data URLs are supported")
    if not limits.allow_urls:
        raise PuyuError(f"{source}: image URLs are not enabled on this server; send the image as a data URL")
    request = urllib.request.Request(url, headers={"User-Agent": "puyu"})
    try:
        with urllib.request.urlopen(request, timeout=limits.url_timeout) as response:
            data = response.read(limits.max_bytes + 1)
    except (OSError, ValueError) as bad:
        raise PuyuError(f"{source}: could not fetch {url[:200]} ({type(bad).__name__})") from None
    return decode_image(data, limits, source)


def load_url(url: Any, limits: ImageLimits | None = None, source: str = "image") -> LoadedImage:
    """An `image_url` part's URL: a data URL, or an http(s) URL when `limits.allow_urls`; never a local file."""
    if not isinstance(url, str):
        raise PuyuError(f"{source}: the image url must be a string")
    if url.startswith("data:"):
        return decode_data_url(url, limits, source)
    return fetch_url(url, limits or ImageLimits(), source)


def load_image(
    image: str | os.PathLike[str] | bytes | Image.Image | LoadedImage,
    limits: ImageLimits | None = None,
    source: str = "image",
) -> LoadedImage:
    """Any supported image reference → LoadedImage.

    Args:
        image: a PIL image, encoded bytes, a data URL, an http(s) URL (when allowed) or a local file path.
        limits: size limits; local files and PIL images are the caller's own, URLs and bytes are not.
        source: name used in error messages.
    """
    limits = limits or ImageLimits()
    if isinstance(image, LoadedImage):
        return image
    if isinstance(image, Image.Image):
        if image.width * image.height > limits.max_pixels:
            raise PuyuError(
                f"{source}: {image.width}x{image.height} pixels, more than the limit of {limits.max_pixels}"
            )
        return _loaded(to_rgb(image))
    if isinstance(image, bytes):
        return decode_image(image, limits, source)
    text = os.fspath(image)
    if text.startswith("data:"):
        return decode_data_url(text, limits, source)
    if re.match(r"^[a-z][a-z0-9+.-]*://", text, re.I):
        return fetch_url(text, limits, source)
    path = Path(text)
    if not path.is_file():
        raise PuyuError(f"{source}: no such image file {text[:200]!r}")
    if path.stat().st_size > limits.max_bytes:
        raise PuyuError(f"{source}: {path} is larger than the limit of {limits.max_bytes} bytes")
    return decode_image(path.read_bytes(), limits, f"{source} ({path.name})")


def to_data_url(image: Image.Image, format: str = "PNG") -> str:
    """A base64 data URL of `image` (for sending images to an OpenAI-compatible server)."""
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return f"data:image/{format.lower()};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
