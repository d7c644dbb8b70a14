"""Error statuses in OpenAI's shape: 400, 401, 404, 429, 503."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from openai.types import Completion
from serve_support import MODEL_NAME, engine_factory, live_server

from puyu.serve.app import create_app

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def guarded(model_folder: Path) -> Iterator[str]:
    """A server with an API key."""
    with live_server(create_app(engine_factory(model_folder)(), model_name=MODEL_NAME, api_key="sesame")) as url:
        yield url


def _error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_api_key(guarded: str) -> None:
    good = openai.OpenAI(base_url=guarded, api_key="sesame", max_retries=0)
    assert good.models.list().data[0].id == MODEL_NAME
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=guarded, api_key="wrong", max_retries=0).models.list()
    missing = httpx.post(f"{guarded}/chat/completions", json={"model": MODEL_NAME, "messages": MESSAGES})
    assert missing.status_code == 401
    assert _error(missing)["type"] == "authentication_error"
    assert httpx.get(guarded.removesuffix("/v1") + "/health").status_code == 200  # health needs no key


def test_unknown_model_is_404(guarded: str) -> None:
    client = openai.OpenAI(base_url=guarded, api_key="sesame", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9", messages=MESSAGES)
    assert "gpt-9" in caught.value.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"temperature": 3.0}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 0}, "n"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages"),
        ({"logit_bias": {"99999": 1}}, "logit_bias"),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
    ],
)
def test_invalid_parameters_are_400(guarded: str, body: dict, param: str) -> None:
    payload = {"model": MODEL_NAME, "messages": MESSAGES, "max_tokens": 2, **body}
    response = httpx.post(f"{guarded}/chat/completions", json=payload, headers={"Authorization": "Bearer sesame"})
    assert response.status_code == 400
    error = _error(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None or error["param"].startswith(param.split(".")[0])


def test_malformed_json_is_400(guarded: str) -> None:
    response = httpx.post(
        f"{guarded}/completions",
        content=b"{not json",
        headers={"Authorization": "Bearer sesame", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    _error(response)


def test_prompt_too_long_is_400(guarded: str) -> None:
    client = openai.OpenAI(base_url=guarded, api_key="sesame", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=MODEL_NAME, prompt=[5] * 1100, max_tokens=4)
    assert "1100" in caught.value.message and "1024" in caught.value.message
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "y" * 1500}])


def test_queue_full_is_429(model_folder: Path) -> None:
    """One sequence runs at a time and one may wait: a third concurrent request is refused."""
    engine = engine_factory(model_folder, max_num_seqs=1, max_queue=1, delay=0.01)()
    with live_server(create_app(engine, model_name=MODEL_NAME)) as url:
        client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
        running, waiting = _third_is_refused(
            client, 120, lambda: engine.stats().num_running == 1, lambda: engine.stats().num_waiting == 1
        )
        assert running.choices[0].finish_reason == "length"
        assert waiting.usage.completion_tokens == 120
        metrics = httpx.get(url.removesuffix("/v1") + "/metrics").text
        assert 'status="429"' in metrics


def test_server_concurrency_limit_queues_then_429(model_folder: Path) -> None:
    engine = engine_factory(model_folder, delay=0.01)()
    app = create_app(engine, model_name=MODEL_NAME, max_concurrency=1, max_queue=1)
    with live_server(app) as url:
        client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
        first, second = _third_is_refused(
            client, 100, lambda: engine.stats().num_running == 1, lambda: app.state.puyu.waiting == 1
        )
        assert first.usage.completion_tokens == second.usage.completion_tokens == 100
        # a finished stream gives its slot back
        for _ in range(2):
            stream = client.completions.create(model=MODEL_NAME, prompt="c", max_tokens=3, stream=True)
            assert [c.choices[0].finish_reason for c in stream][-1] is not None
        assert not app.state.puyu.slots.locked()


def test_503_while_loading(model_folder: Path) -> None:
    release = threading.Event()
    build = engine_factory(model_folder)

    def loader() -> object:
        release.wait(timeout=60)
        return build()

    with live_server(create_app(loader, model_name=MODEL_NAME)) as url:
        client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
        health = httpx.get(url.removesuffix("/v1") + "/health")
        assert health.status_code == 503
        assert _error(health)["code"] == "model_loading"
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, max_tokens=2)
        assert caught.value.status_code == 503
        release.set()
        _wait_for(lambda: httpx.get(url.removesuffix("/v1") + "/health").status_code == 200)
        reply = client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, max_tokens=2)
        assert reply.usage.completion_tokens >= 1


def _third_is_refused(
    client: openai.OpenAI, max_tokens: int, running: Callable[[], bool], waiting: Callable[[], bool]
) -> tuple[Completion, Completion]:
    """Send two long completions, the second once `running()` holds, and a third once `waiting()` holds: the third
    is refused with 429. Returns the first two once they finish."""
    long = {"model": MODEL_NAME, "prompt": "a", "max_tokens": max_tokens, "extra_body": {"ignore_eos": True}}
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.completions.create, **long)
        _wait_for(running)
        second = pool.submit(client.completions.create, **long)
        _wait_for(waiting)
        with pytest.raises(openai.RateLimitError):
            client.completions.create(model=MODEL_NAME, prompt="b", max_tokens=2)
        return first.result(), second.result()


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)
