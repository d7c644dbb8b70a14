"""A small world of pictures rendered with PIL: shapes, colours, counts, digits and short words on plain backgrounds.

Every sample is one picture and one question with a short answer and four (or three) options, so the same
files serve as multiple-choice or short-answer evaluation and as fine-tuning data. Rendering is
deterministic for a seed; nothing is downloaded.

Layout written by `render_world(out)`:
  images/00000.png …
  qa.jsonl     {"id", "image", "kind", "question", "choices", "answer"}   (image paths relative to the file)
  sft.jsonl    {"messages": [{"role": "user", "content": [{"type": "image", "image": path}, {"type": "text", …}]},
                              {"role": "assistant", "content": answer}]}
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from puyu.errors import PuyuError
from puyu.io import atomic_write_text

COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 215),
    "yellow": (225, 195, 30),
    "purple": (145, 55, 185),
    "orange": (240, 130, 20),
}
BACKGROUNDS = ((255, 255, 255), (235, 235, 235), (245, 240, 225), (225, 235, 245))
SHAPES = ("circle", "square", "triangle")
WORDS = ("cat", "sun", "tree", "book", "fish", "star", "moon", "boat")
KINDS = ("colour", "shape", "count", "digit", "word")
QUESTIONS = {
    "colour": "What colour is the shape?",
    "shape": "What shape is in the picture?",
    "count": "How many shapes are there?",
    "digit": "What digit is written in the picture?",
    "word": "What word is written in the picture?",
}


@dataclass
class WorldSample:
    """One picture and its question."""

    id: str
    image: Image.Image
    kind: str
    question: str
    choices: list[str]
    answer: str


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill: tuple[int, ...]) -> None:
    left, top, right, bottom = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((left + right) // 2, top), (right, bottom), (left, bottom)], fill=fill)


def _options(rng: random.Random, answer: str, pool: list[str], count: int = 4) -> list[str]:
    others = rng.sample([p for p in pool if p != answer], min(count - 1, len(pool) - 1))
    options = [answer, *others]
    rng.shuffle(options)
    return options


def sample(index: int, seed: int = 0, kind: str | None = None) -> WorldSample:
    """The `index`-th sample of the world for `seed` (kinds cycle unless `kind` is given)."""
    rng = random.Random(f"{seed}:{index}")
    kind = kind or KINDS[index % len(KINDS)]
    width, height = rng.randint(64, 168), rng.randint(64, 168)
    image = Image.new("RGB", (width, height), rng.choice(BACKGROUNDS))
    draw = ImageDraw.Draw(image)
    colour = rng.choice(list(COLOURS))
    shape = rng.choice(SHAPES)
    side = min(width, height)
    if kind in ("colour", "shape"):
        size = rng.randint(side // 2, side * 4 // 5)
        left, top = rng.randint(0, width - size), rng.randint(0, height - size)
        _draw_shape(draw, shape, (left, top, left + size, top + size), COLOURS[colour])
        answer = colour if kind == "colour" else shape
        choices = _options(rng, answer, list(COLOURS) if kind == "colour" else list(SHAPES))
    elif kind == "count":
        count = rng.randint(1, 4)
        size = max(side // 5, 8)
        # One shape per quadrant, so shapes never overlap and each is counted once.
        cells = rng.sample([(0, 0), (1, 0), (0, 1), (1, 1)], count)
        for cx, cy in cells:
            x0 = cx * width // 2 + rng.randint(0, max(width // 2 - size, 0))
            y0 = cy * height // 2 + rng.randint(0, max(height // 2 - size, 0))
            _draw_shape(draw, shape, (x0, y0, x0 + size, y0 + size), COLOURS[colour])
        answer = str(count)
        choices = ["1", "2", "3", "4"]
    elif kind in ("digit", "word"):
        answer = str(rng.randint(0, 9)) if kind == "digit" else rng.choice(WORDS)
        font = ImageFont.load_default(size=max(side * 2 // (3 if kind == "digit" else 5), 10))
        left, top, right, bottom = draw.textbbox((0, 0), answer, font=font)
        x = rng.randint(0, max(width - (right - left), 0)) - left
        y = rng.randint(0, max(height - (bottom - top), 0)) - top
        draw.text((x, y), answer, font=font, fill=COLOURS[colour] if colour != "yellow" else (20, 20, 20))
        pool = [str(d) for d in range(10)] if kind == "digit" else list(WORDS)
        choices = _options(rng, answer, pool)
    else:
        raise PuyuError(f"unknown image-world kind {kind!r} (known: {', '.join(KINDS)})")
    return WorldSample(f"{seed}-{index:05d}", image, kind, QUESTIONS[kind], choices, answer)


def render_world(out: str | os.PathLike[str], count: int = 200, seed: int = 0) -> Path:
    """Render `count` samples into `out` (images/, qa.jsonl, sft.jsonl); returns the folder.

    Args:
        out: output folder (created).
        count: samples.
        seed: world seed; a different seed gives disjoint pictures (use one for training, one for evaluation).
    """
    if count < 1:
        raise PuyuError(f"count must be at least 1, got {count}")
    folder = Path(out)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    qa, sft = [], []
    for index in range(count):
        item = sample(index, seed)
        relative = f"images/{index:05d}.png"
        item.image.save(folder / relative)
        qa.append({"id": item.id, "image": relative, "kind": item.kind, "question": item.question,
                   "choices": item.choices, "answer": item.answer})  # fmt: skip
        user = [{"type": "image", "image": relative}, {"type": "text", "text": item.question}]
        sft.append({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": item.answer}]})
    atomic_write_text(folder / "qa.jsonl", "".join(json.dumps(r) + "\n" for r in qa))
    atomic_write_text(folder / "sft.jsonl", "".join(json.dumps(r) + "\n" for r in sft))
    return folder
