"""The image processor against transformers' PIL GotOcr2 processor (the one InternVL's -hf folders name), and
untrusted image decoding."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from puyu.errors import PuyuError
from puyu.model.vision.images import ImageLimits, decode_data_url, decode_image, load_image, to_data_url
from puyu.model.vision.processor import ImageProcessor, best_grid

CLIP = dict(mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))


def _random_images(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        width, height = (int(v) for v in rng.integers(3, 260, 2))
        mode = ("RGB", "RGBA", "L")[i % 3]
        channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
        pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        images.append(Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode))
    return images


@pytest.mark.parametrize(
    "settings",
    [
        dict(size=28, max_tiles=6, **CLIP),
        pytest.param(dict(size=42, min_tiles=2, max_tiles=9, use_thumbnail=True), marks=pytest.mark.slow),
        pytest.param(dict(size=28, dynamic=False), marks=pytest.mark.slow),
    ],
)
def test_pixel_values_equal_transformers(settings: dict):
    pil_processor = pytest.importorskip("transformers.models.got_ocr2.image_processing_pil_got_ocr2")
    ours = ImageProcessor(**settings)
    hf_settings = {k: v for k, v in ours.to_hf().items() if k != "image_processor_type"}
    theirs = pil_processor.GotOcr2ImageProcessorPil(**hf_settings)
    for image in _random_images(20):
        expected = theirs(images=[image], return_tensors="np")
        got = ours(image)
        assert got.shape[0] == int(expected["num_patches"][0]) == ours.num_tiles(*image.size)
        np.testing.assert_array_equal(got, expected["pixel_values"])


def test_grid_follows_the_aspect_ratio():
    assert best_grid(896, 448, 448, 1, 12) == (2, 1)
    assert best_grid(448, 1344, 448, 1, 12) == (1, 3)
    assert best_grid(100, 100, 448, 1, 12) == (1, 1)  # small square: no growth past twice its area
    assert best_grid(2000, 2000, 448, 1, 12) == (3, 3)


def test_reads_both_preprocessor_config_families(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(
        '{"image_processor_type": "CLIPImageProcessor", "crop_size": 448, "image_mean": [0.485, 0.456, 0.406],'
        ' "image_std": [0.229, 0.224, 0.225], "resample": 3}'
    )
    original = ImageProcessor.from_pretrained(tmp_path, {"max_tiles": 6})
    assert (original.size, original.max_tiles, original.std) == (448, 6, (0.229, 0.224, 0.225))
    (tmp_path / "preprocessor_config.json").write_text(
        '{"crop_to_patches": true, "max_patches": 4, "size": {"height": 56, "width": 56}}'
    )
    assert ImageProcessor.from_pretrained(tmp_path).max_tiles == 4
    (tmp_path / "preprocessor_config.json").write_text("[1]")
    with pytest.raises(PuyuError, match="JSON object"):
        ImageProcessor.from_pretrained(tmp_path)


def _png(width: int = 9, height: int = 7, color=(200, 10, 10), noise: bool = False) -> bytes:
    image = Image.new("RGB", (width, height), color)
    if noise:
        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_same_pixels_same_digest_across_encodings():
    image = Image.new("RGB", (9, 7), (200, 10, 10))
    digests = {load_image(image).digest, decode_image(_png()).digest, decode_data_url(to_data_url(image)).digest}
    assert len(digests) == 1
    assert decode_image(_png(color=(0, 0, 0))).digest not in digests


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not an image at all", "not an image"),
        (_png(40, 40, noise=True)[:2500], "unreadable image"),
        (_png(width=5000, height=300), "pixels, more than"),
        (b"x" * 20_000, "bytes, more than"),
    ],
)
def test_bad_images_fail_with_one_line(data: bytes, message: str):
    limits = ImageLimits(max_bytes=10_000, max_pixels=1_000_000)
    with pytest.raises(PuyuError, match=message):
        decode_image(data, limits)


def test_data_urls_and_remote_urls():
    with pytest.raises(PuyuError, match="base64"):
        decode_data_url("data:image/png;base64,@@@")
    with pytest.raises(PuyuError, match="not an image"):
        decode_data_url("data:text/plain;base64," + base64.b64encode(b"hello").decode())
    with pytest.raises(PuyuError, match="not enabled"):
        load_image("https://example.com/cat.png")
    with pytest.raises(PuyuError, match="only http"):
        load_image("ftp://example.com/cat.png", ImageLimits(allow_urls=True))
