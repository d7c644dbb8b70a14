"""Images through `LLM.chat` and the engine: greedy parity with transformers, the embedding cache and prefix caching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from vlm_support import hf_vlm_folder

from puyu.engine.llm import LLM
from puyu.errors import PuyuError
from puyu.generation.sampling import SamplingParams
from puyu.model.vision.images import to_data_url

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hf_vlm_folder(tmp_path_factory.mktemp("vlm") / "qwen2")


@pytest.fixture(scope="module")
def hf(folder: Path):
    model = transformers.InternVLForConditionalGeneration.from_pretrained(folder).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def _picture(seed: int, size: tuple[int, int] = (120, 50)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _conversation(*images: Image.Image, question: str = "What is in the picture?") -> list[dict]:
    parts = [{"type": "image_url", "image_url": {"url": to_data_url(image)}} for image in images]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": question}]}]


def _greedy(llm: LLM, messages: list[dict], tokens: int = 32, request_id: str = "r") -> tuple[list[int], int]:
    ids, spans = llm.engine.chat_request(messages)
    llm.engine.add_request(request_id, ids, SamplingParams(max_tokens=tokens, temperature=0, ignore_eos=True), spans)
    out: list[int] = []
    cached = 0
    while llm.engine.has_unfinished_requests():
        for step in llm.engine.step():
            out.extend(step.token_ids)
            cached = step.num_cached_tokens
    return out, cached


@pytest.mark.parametrize("chunk", [7, pytest.param(2048, marks=pytest.mark.slow)])
def test_engine_greedy_matches_transformers(folder: Path, hf, chunk: int):
    llm = LLM(folder, num_blocks=64, block_size=8, max_num_batched_tokens=chunk, dtype="float32")
    messages = _conversation(_picture(0), _picture(1, (40, 90)))
    ids, spans = llm.engine.chat_request(messages)
    assert [s.length for s in spans] == [4 * 3, 4 * 3]  # 2x1 and 1x2 grids plus a thumbnail, 4 tokens a tile
    pixel_values = torch.from_numpy(np.concatenate([s.pixels for s in spans]))
    expected = hf.generate(
        input_ids=torch.tensor([ids]), pixel_values=pixel_values, max_new_tokens=32, do_sample=False
    )[0, len(ids) :]
    got, _ = _greedy(llm, messages)
    assert got == expected.tolist()


def test_repeated_image_hits_the_caches(folder: Path):
    llm = LLM(folder, num_blocks=64, block_size=4, dtype="float32")
    first, cached = _greedy(llm, _conversation(_picture(3)), request_id="a")
    assert cached == 0 and llm.engine.vision.encoder_runs == 1
    again, cached = _greedy(llm, _conversation(_picture(3)), request_id="b")
    assert again == first
    assert cached > 20  # the text before, the whole image run and the question's full blocks
    assert llm.engine.vision.encoder_runs == 1  # nothing left to encode: the image's KV came from the cache
    assert llm.engine.stats().prefix_cache_hit_rate > 0
    # A different image with the same placeholder ids must not reuse the first image's KV blocks.
    _, spans = llm.engine.chat_request(_conversation(_picture(4)))
    _, cached = _greedy(llm, _conversation(_picture(4)), request_id="c")
    assert cached <= spans[0].offset
    assert llm.engine.vision.encoder_runs == 2


def test_chat_with_images_in_process(folder: Path):
    llm = LLM(folder, num_blocks=64, dtype="float32")
    picture = _picture(5)
    by_url, by_image = llm.chat(
        [_conversation(picture), [{"role": "user", "content": [{"type": "image", "image": picture},
                                                               {"type": "text", "text": "What is in the picture?"}]}]],
        SamplingParams(max_tokens=6, temperature=0),
    )  # fmt: skip
    assert by_url.token_ids == by_image.token_ids and by_url.num_prompt_tokens == by_image.num_prompt_tokens
    params = SamplingParams(max_tokens=6, temperature=0)
    streamed = [token for out in llm.stream_chat(_conversation(picture), params) for token in out.token_ids]
    assert streamed == by_url.token_ids


def test_bad_image_requests(folder: Path, tmp_path: Path):
    llm = LLM(folder, num_blocks=64, dtype="float32")
    with pytest.raises(PuyuError, match="placeholder"):
        llm.chat(_conversation(_picture(0), question="see <IMG_CONTEXT> here"))
    with pytest.raises(PuyuError, match="too many images"):
        llm.chat(_conversation(*[_picture(i, (20, 20)) for i in range(9)]))
    with pytest.raises(PuyuError, match="not an image"):
        llm.chat(
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}],
                }
            ]
        )
    with pytest.raises(PuyuError, match="only supported in user"):
        llm.chat([{"role": "assistant", "content": [{"type": "image", "image": _picture(0)}]}])

    from puyu.model.init import init_model_folder

    text_only = LLM(init_model_folder("qwen2-tiny", tmp_path / "text"), num_blocks=16)
    with pytest.raises(PuyuError, match="does not accept images"):
        text_only.chat(_conversation(_picture(0)))
