"""InternVL logits and greedy parity with transformers' `InternVLForConditionalGeneration` on tiny random models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from vlm_support import hf_internvl, image_prompt, pixels

from puyu.model.kv_cache import DenseKVCache
from puyu.model.vision import VisionLanguageModel, load_vlm

pytest.importorskip("transformers")

CASES = [
    # text family, kv heads, tied, vision extras
    ("qwen2", 2, False, {}),
    pytest.param("llama", 4, True, {}, marks=pytest.mark.slow),
    ("llama", 2, False, {"attention_bias": True, "use_qk_norm": True, "norm_type": "rms_norm"}),
    pytest.param("qwen2", 1, True, {"use_mean_pooling": False}, marks=pytest.mark.slow),
]


@torch.no_grad()
def _greedy(model: VisionLanguageModel, ids: torch.Tensor, tiles: torch.Tensor, steps: int) -> list[int]:
    text = model.config.text
    cache = DenseKVCache(text.num_layers, text.num_kv_heads, text.head_dim or 0, ids.shape[1] + steps)
    embeddings = model.embed(ids, tiles)
    logits = model.language_model(ids, cache=cache, last_only=True, inputs_embeds=embeddings)
    out: list[int] = []
    for _ in range(steps):
        token = int(logits[0, -1].argmax())
        out.append(token)
        logits = model.language_model(torch.tensor([[token]]), cache=cache, last_only=True)
    return out


@pytest.mark.parametrize(("family", "kv_heads", "tied", "vision"), CASES)
def test_logits_and_greedy_match_transformers(tmp_path: Path, family: str, kv_heads: int, tied: bool, vision: dict):
    hf = hf_internvl(family, kv_heads, tied, **vision)
    hf.save_pretrained(tmp_path)
    ours = load_vlm(tmp_path, dtype="float32")
    assert ours.config.text.family == family and ours.config.layout == "hf"
    per_tile = ours.config.tokens_per_tile
    ids = image_prompt([2 * per_tile, per_tile])  # two images: two tiles, then one
    tiles = pixels(3)
    with torch.no_grad():
        expected = hf(input_ids=ids, pixel_values=tiles).logits
        got = ours(ids, tiles)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)

    hf_tokens = hf.generate(input_ids=ids, pixel_values=tiles, max_new_tokens=32, do_sample=False)[0, ids.shape[1] :]
    assert _greedy(ours, ids, tiles, 32) == hf_tokens.tolist()


def test_earlier_feature_layer_and_bigger_tiles(tmp_path: Path):
    hf = hf_internvl("qwen2", image_size=84, feature_layer=-2, num_hidden_layers=3)
    hf.save_pretrained(tmp_path)
    ours = load_vlm(tmp_path, dtype="float32")
    assert ours.config.tokens_per_tile == 9
    ids = image_prompt([9])
    tiles = pixels(1, size=84)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, tiles), hf(input_ids=ids, pixel_values=tiles).logits, atol=1e-4, rtol=1e-4)


def test_placeholder_count_must_match_the_images(tmp_path: Path):
    from puyu.errors import PuyuError

    hf_internvl().save_pretrained(tmp_path)
    ours = load_vlm(tmp_path, dtype="float32")
    with pytest.raises(PuyuError, match="placeholder"):
        ours(image_prompt([3]), pixels(1))
