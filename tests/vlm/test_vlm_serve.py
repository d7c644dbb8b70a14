"""`image_url` parts on /v1/chat/completions through the official `openai` client."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from vlm_support import hf_vlm_folder

from puyu.engine.async_engine import AsyncLLMEngine
from puyu.engine.engine import LLMEngine
from puyu.engine.llm import LLM
from puyu.generation.sampling import SamplingParams
from puyu.model.vision.images import ImageLimits, to_data_url
from puyu.serve.app import create_app
from server_support import live_server

openai = pytest.importorskip("openai")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hf_vlm_folder(tmp_path_factory.mktemp("serve-vlm") / "qwen2")


@pytest.fixture(scope="module")
def client(folder: Path) -> Iterator[openai.OpenAI]:
    engine = LLMEngine.from_pretrained(folder, _config())
    engine.vision.limits = ImageLimits(max_pixels=200_000, max_images=2, max_bytes=400_000)
    with live_server(create_app(AsyncLLMEngine(engine), model_name="vlm")) as url:
        yield openai.OpenAI(base_url=url, api_key="unused", max_retries=0)


def _config():
    from puyu.engine.config import EngineConfig

    return EngineConfig(num_blocks=128, block_size=8, dtype="float32")


def _picture(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (60, 100, 3), dtype=np.uint8))


def _messages(url: str, text: str = "Describe the image.") -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]}
    ]


def test_base64_image_matches_in_process(client: openai.OpenAI, folder: Path):
    messages = _messages(to_data_url(_picture()))
    reply = client.chat.completions.create(model="vlm", messages=messages, max_tokens=12, temperature=0)
    expected = LLM(folder, _config()).chat(messages, SamplingParams(max_tokens=12, temperature=0))[0]
    assert reply.choices[0].message.content == expected.text
    assert reply.usage.prompt_tokens == expected.num_prompt_tokens
    again = client.chat.completions.create(model="vlm", messages=messages, max_tokens=12, temperature=0)
    assert again.choices[0].message.content == expected.text
    assert again.usage.prompt_tokens_details.cached_tokens > 0
    chunks = client.chat.completions.create(model="vlm", messages=messages, max_tokens=12, temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected.text


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("data:image/png;base64," + base64.b64encode(b"plain text, not a picture").decode(), "not an image"),
        ("data:image/png;base64," + base64.b64encode(_png_bytes(_picture())[:3000]).decode(), "unreadable image"),
        (to_data_url(Image.new("RGB", (1000, 1000))), "more than the limit"),
        ("data:image/png;base64,%%%", "base64"),
        ("https://example.com/cat.png", "not enabled"),
        ("file:///etc/passwd", "only http"),
        ("/etc/hostname", "only http"),
    ],
)
def test_bad_images_get_openai_400s(client: openai.OpenAI, url: str, message: str):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="vlm", messages=_messages(url), max_tokens=4)
    assert message in caught.value.body["message"] and caught.value.body["param"] == "messages"


def test_malformed_parts_and_too_many_images(client: openai.OpenAI):
    url = to_data_url(_picture())
    bad = [{"role": "user", "content": [{"type": "image_url", "image_url": {"detail": "low"}}]}]
    with pytest.raises(openai.BadRequestError, match="url"):
        client.chat.completions.create(model="vlm", messages=bad, max_tokens=4)
    local = [{"role": "user", "content": [{"type": "image", "image": "/etc/hostname"}]}]
    # Over HTTP a part names an image only by URL: the typed schema refuses any other part type.
    with pytest.raises(openai.BadRequestError, match="expected tags: 'text', 'image_url'"):
        client.chat.completions.create(model="vlm", messages=local, max_tokens=4)
    three = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}] * 3}]
    with pytest.raises(openai.BadRequestError, match="too many images"):
        client.chat.completions.create(model="vlm", messages=three, max_tokens=4)
    # the server is still serving
    ok = client.chat.completions.create(model="vlm", messages=_messages(url), max_tokens=2)
    assert ok.choices[0].finish_reason in ("length", "stop")


def test_text_only_model_refuses_images(tmp_path: Path):
    from puyu.model.init import init_model_folder

    folder = init_model_folder("qwen2-tiny", tmp_path / "text")
    with live_server(create_app(AsyncLLMEngine(LLMEngine.from_pretrained(folder, _config())), model_name="t")) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="no vision encoder"):
            client.chat.completions.create(model="t", messages=_messages(to_data_url(_picture())), max_tokens=2)
