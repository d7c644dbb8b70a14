"""The InternVL image processor: dynamic-resolution tiling, a thumbnail, normalisation (PIL + NumPy).

An image is resized (bicubic) to the grid of `size`×`size` tiles whose aspect ratio is closest to its own
(between `min_tiles` and `max_tiles` tiles; on a tie the larger grid while the image's area exceeds half the
grid's), cut into those tiles row by row, and followed by a thumbnail (the whole image at one tile) when it
made more than one tile. Each tile is scaled to [0, 1] and normalised by the folder's mean and std. This
follows InternVL's `dynamic_preprocess` and transformers' GotOcr2 image processor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from puyu.errors import PuyuError
from puyu.model.vision.config import read_json_object
from puyu.model.vision.images import to_rgb

PREPROCESSOR_CONFIG = "preprocessor_config.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESAMPLE = {0: Image.Resampling.NEAREST, 1: Image.Resampling.LANCZOS, 2: Image.Resampling.BILINEAR,
             3: Image.Resampling.BICUBIC, 4: Image.Resampling.BOX, 5: Image.Resampling.HAMMING}  # fmt: skip


@lru_cache(maxsize=64)
def _grids(min_tiles: int, max_tiles: int) -> tuple[tuple[int, int], ...]:
    """(columns, rows) of every grid with min..max tiles, fewest tiles first."""
    grids = [
        (c, r) for c in range(1, max_tiles + 1) for r in range(1, max_tiles + 1) if min_tiles <= c * r <= max_tiles
    ]
    return tuple(sorted(grids, key=lambda g: g[0] * g[1]))


def best_grid(width: int, height: int, tile: int, min_tiles: int, max_tiles: int) -> tuple[int, int]:
    """(columns, rows) of the tile grid for an image of `width`×`height`."""
    aspect = width / height
    area = width * height
    best, best_diff = (1, 1), float("inf")
    for columns, rows in _grids(min_tiles, max_tiles):
        diff = abs(aspect - columns / rows)
        if diff < best_diff:
            best, best_diff = (columns, rows), diff
        elif diff == best_diff and area > 0.5 * tile * tile * columns * rows:
            best = (columns, rows)
    return best


@dataclass(frozen=True)
class ImageProcessor:
    """Turns images into normalised tiles.

    Args:
        size: tile side in pixels.
        mean, std: per-channel normalisation.
        min_tiles, max_tiles: bounds on the tile grid.
        use_thumbnail: append the whole image as one more tile when there are several.
        dynamic: tile by aspect ratio; False resizes the whole image to one tile.
        resample: PIL resampling filter (bicubic).
        rescale_factor: pixel scale before normalising (1/255).
    """

    size: int = 448
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    min_tiles: int = 1
    max_tiles: int = 12
    use_thumbnail: bool = True
    dynamic: bool = True
    resample: Image.Resampling = Image.Resampling.BICUBIC
    rescale_factor: float = 1 / 255

    def __post_init__(self) -> None:
        if not 1 <= self.min_tiles <= self.max_tiles:
            raise PuyuError(
                f"image processor: need 1 <= min_tiles <= max_tiles, got {self.min_tiles}, {self.max_tiles}"
            )
        if self.size <= 0:
            raise PuyuError(f"image processor: tile size must be positive, got {self.size}")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], defaults: dict[str, Any] | None = None) -> ImageProcessor:
        """Read a folder's `preprocessor_config.json` (transformers' GotOcr2 keys or the original CLIP-style
        ones); `defaults` (e.g. tile size and tiling bounds from the model config) fill what it leaves out."""
        settings = dict(defaults or {})
        file = Path(path) / PREPROCESSOR_CONFIG
        if file.is_file():
            settings.update(_settings(read_json_object(file), str(file)))
        return cls(**settings)

    def to_hf(self) -> dict[str, Any]:
        """The `preprocessor_config.json` dict transformers reads (its GotOcr2 image processor)."""
        return {
            "image_processor_type": "GotOcr2ImageProcessor",
            "crop_to_patches": self.dynamic,
            "min_patches": self.min_tiles,
            "max_patches": self.max_tiles,
            "size": {"height": self.size, "width": self.size},
            "image_mean": list(self.mean),
            "image_std": list(self.std),
            "resample": int(self.resample),
            "rescale_factor": self.rescale_factor,
            "do_resize": True,
            "do_rescale": True,
            "do_normalize": True,
            "do_convert_rgb": True,
        }

    def tiles(self, image: Image.Image) -> list[Image.Image]:
        """The image's tiles (RGB, `size`×`size`), thumbnail last."""
        image = to_rgb(image)
        size = (self.size, self.size)
        if not self.dynamic or self.max_tiles == 1:
            return [image.resize(size, self.resample)]
        columns, rows = best_grid(image.width, image.height, self.size, self.min_tiles, self.max_tiles)
        resized = image.resize((columns * self.size, rows * self.size), self.resample)
        out = []
        for i in range(columns * rows):
            left, top = (i % columns) * self.size, (i // columns) * self.size
            out.append(resized.crop((left, top, left + self.size, top + self.size)))
        if self.use_thumbnail and len(out) > 1:
            out.append(image.resize(size, self.resample))
        return out

    def num_tiles(self, width: int, height: int) -> int:
        """How many tiles an image of this size becomes (thumbnail included)."""
        if not self.dynamic or self.max_tiles == 1:
            return 1
        columns, rows = best_grid(width, height, self.size, self.min_tiles, self.max_tiles)
        return columns * rows + (1 if self.use_thumbnail and columns * rows > 1 else 0)

    def __call__(self, image: Image.Image) -> np.ndarray:
        """Normalised tiles [N, 3, size, size] (float32) of one image."""
        tiles = np.stack([np.asarray(tile) for tile in self.tiles(image)])  # [N, H, W, 3] uint8
        scaled = (tiles.astype(np.float64) * self.rescale_factor).astype(np.float32)
        mean, std = np.asarray(self.mean, dtype=np.float32), np.asarray(self.std, dtype=np.float32)
        return ((scaled - mean) / std).transpose(0, 3, 1, 2).copy()


def _settings(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """ImageProcessor fields from a preprocessor config of either family."""
    out: dict[str, Any] = {}
    size = raw.get("size") or raw.get("crop_size")
    if isinstance(size, dict):
        size = size.get("height", size.get("shortest_edge"))
    if size is not None:
        out["size"] = int(size)
    for key, field in (("image_mean", "mean"), ("image_std", "std")):
        if key in raw:
            values = raw[key]
            if not (isinstance(values, list) and len(values) == 3):
                raise PuyuError(f"{source}: {key} must be a list of 3 numbers")
            out[field] = tuple(float(v) for v in values)
    for key, field in (("min_patches", "min_tiles"), ("max_patches", "max_tiles")):
        if key in raw:
            out[field] = int(raw[key])
    if "crop_to_patches" in raw:
        out["dynamic"] = bool(raw["crop_to_patches"])
    if "resample" in raw:
        if raw["resample"] not in _RESAMPLE:
            raise PuyuError(f"{source}: unknown resample {raw['resample']!r}")
        out["resample"] = _RESAMPLE[raw["resample"]]
    if "rescale_factor" in raw:
        out["rescale_factor"] = float(raw["rescale_factor"])
    return out
