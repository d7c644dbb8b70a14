"""The server through the real `openai` client: models, completions, chat, streaming, n, logprobs,
echo, stop, seeds, usage, JSON mode and client disconnects."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import torch
from serve_support import MODEL_NAME, engine_factory, live_server

from puyu.model.checkpoint import load_model
from puyu.serve.app import create_app
from puyu.tokenizer import Tokenizer

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def server(model_folder: Path) -> Iterator[tuple[str, object]]:
    engine = engine_factory(model_folder)()
    with live_server(create_app(engine, model_name=MODEL_NAME)) as url:
        yield url, engine


@pytest.fixture(scope="module")
def client(server: tuple[str, object]) -> openai.OpenAI:
    return openai.OpenAI(base_url=server[0], api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def reference(model_folder: Path) -> tuple[torch.nn.Module, Tokenizer]:
    return load_model(model_folder, dtype="float32"), Tokenizer.from_pretrained(model_folder)


def test_models_list(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [model.id for model in models.data] == [MODEL_NAME]
    assert models.data[0].object == "model"


def test_chat_stream_matches_non_stream(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=MODEL_NAME, messages=MESSAGES, max_tokens=12, temperature=0)
    stream = client.chat.completions.create(
        model=MODEL_NAME,
        messages=MESSAGES,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    # usage arrives once, in a last chunk without choices, and agrees with the non-streamed count
    assert [c.usage is not None for c in chunks].count(True) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens


def test_completion_stream_matches_non_stream(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=MODEL_NAME, prompt="Once upon", max_tokens=10, temperature=0)
    pieces = client.completions.create(model=MODEL_NAME, prompt="Once upon", max_tokens=10, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in pieces) == whole.choices[0].text
    assert whole.usage.completion_tokens == 10 and whole.choices[0].finish_reason == "length"


def test_prompt_forms(client: openai.OpenAI, reference: tuple[torch.nn.Module, Tokenizer]) -> None:
    _, tokenizer = reference
    ids = tokenizer.encode("abc")
    kwargs = {"model": MODEL_NAME, "max_tokens": 5, "temperature": 0}
    by_text = client.completions.create(prompt="abc", **kwargs)
    by_ids = client.completions.create(prompt=ids, **kwargs)
    batch = client.completions.create(prompt=[ids, tokenizer.encode("xyz")], **kwargs)
    texts = client.completions.create(prompt=["abc", "xyz"], **kwargs)
    assert by_text.choices[0].text == by_ids.choices[0].text == batch.choices[0].text
    assert [c.text for c in batch.choices] == [c.text for c in texts.choices]
    assert [c.index for c in texts.choices] == [0, 1]
    assert texts.usage.prompt_tokens == 2 * len(ids)


def test_n_choices_use_consecutive_seeds(client: openai.OpenAI) -> None:
    kwargs = {"model": MODEL_NAME, "messages": MESSAGES, "max_tokens": 8, "temperature": 1.0}
    both = client.chat.completions.create(n=2, seed=5, **kwargs)
    assert [c.index for c in both.choices] == [0, 1]
    first = client.chat.completions.create(seed=5, **kwargs)
    second = client.chat.completions.create(seed=6, **kwargs)
    assert both.choices[0].message.content == first.choices[0].message.content
    assert both.choices[1].message.content == second.choices[0].message.content
    assert both.usage.completion_tokens == first.usage.completion_tokens + second.usage.completion_tokens
    streamed = client.chat.completions.create(n=2, seed=5, stream=True, **kwargs)
    texts = ["", ""]
    for chunk in streamed:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == [c.message.content for c in both.choices]


def test_seed_reproducible(client: openai.OpenAI) -> None:
    kwargs = {"model": MODEL_NAME, "prompt": "The", "max_tokens": 16, "temperature": 1.0, "top_p": 0.9}
    first = client.completions.create(seed=11, **kwargs).choices[0].text
    assert client.completions.create(seed=11, **kwargs).choices[0].text == first
    assert client.completions.create(seed=12, **kwargs).choices[0].text != first


def test_stop_string(client: openai.OpenAI) -> None:
    kwargs = {"model": MODEL_NAME, "prompt": "Hello", "temperature": 0}
    text = client.completions.create(max_tokens=16, **kwargs).choices[0].text
    cut = next(i for i in range(2, len(text)) if text.find(text[i]) == i and text[i] != "\ufffd")
    stopped = client.completions.create(max_tokens=16, stop=[text[cut]], **kwargs)
    assert stopped.choices[0].text == text[:cut]
    assert stopped.choices[0].finish_reason == "stop"


def _greedy_reference(model: torch.nn.Module, prompt: list[int], steps: int) -> tuple[list[int], torch.Tensor]:
    """Greedy ids by full forwards, and the log-softmax table over prompt + output."""
    ids = list(prompt)
    for _ in range(steps):
        with torch.no_grad():
            logits = model(torch.tensor([ids]))[0, -1]
        ids.append(int(logits.argmax()))
    with torch.no_grad():
        table = model(torch.tensor([ids]))[0].float().log_softmax(-1)
    return ids[len(prompt) :], table


def test_chat_logprobs_match_model(
    client: openai.OpenAI, server: tuple[str, object], reference: tuple[torch.nn.Module, Tokenizer]
) -> None:
    model, tokenizer = reference
    reply = client.chat.completions.create(
        model=MODEL_NAME, messages=MESSAGES, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3
    )
    prompt = server[1].engine.chat_prompt_ids(MESSAGES)  # type: ignore[attr-defined]
    output, table = _greedy_reference(model, prompt, len(reply.choices[0].logprobs.content))
    for position, (entry, token) in enumerate(zip(reply.choices[0].logprobs.content, output, strict=True)):
        row = table[len(prompt) + position - 1]
        assert entry.token == tokenizer.decode([token])
        assert entry.logprob == pytest.approx(float(row[token]), abs=1e-4)
        top = row.topk(3)
        assert [t.logprob for t in entry.top_logprobs] == pytest.approx(top.values.tolist(), abs=1e-4)
        assert [t.token for t in entry.top_logprobs] == [tokenizer.decode([int(i)]) for i in top.indices]
        if "\ufffd" not in entry.token:
            assert entry.bytes == list(entry.token.encode())
    # The tokens' bytes joined spell the reply, even where one character spans several tokens.
    joined = b"".join(bytes(entry.bytes) for entry in reply.choices[0].logprobs.content)
    assert joined.decode("utf-8", errors="replace") == tokenizer.decode(output)


def test_echo_prompt_logprobs(client: openai.OpenAI, reference: tuple[torch.nn.Module, Tokenizer]) -> None:
    """lm-evaluation-harness's loglikelihood request: echo, logprobs=1, max_tokens 0 or 1."""
    model, tokenizer = reference
    prompt = tokenizer.encode("The cat sat")
    with torch.no_grad():
        table = model(torch.tensor([prompt]))[0].float().log_softmax(-1)
    expected = [float(table[i - 1, prompt[i]]) for i in range(1, len(prompt))]
    for max_tokens in (0, 1):
        reply = client.completions.create(
            model=MODEL_NAME, prompt=prompt, max_tokens=max_tokens, echo=True, logprobs=1, temperature=0
        )
        logprobs = reply.choices[0].logprobs
        assert len(logprobs.tokens) == len(prompt) + max_tokens
        assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
        assert logprobs.token_logprobs[1 : len(prompt)] == pytest.approx(expected, abs=1e-4)
        for i in range(1, len(prompt)):
            top = logprobs.top_logprobs[i]
            assert top[logprobs.tokens[i]] == logprobs.token_logprobs[i]
            assert max(top.values()) == pytest.approx(float(table[i - 1].max()), abs=1e-4)
        assert reply.choices[0].text.startswith(tokenizer.decode(prompt))
        assert reply.usage.completion_tokens == max_tokens


def test_json_mode_output_parses(client: openai.OpenAI) -> None:
    for seed, temperature in ((0, 0.0), (1, 1.0), (2, 1.0)):
        reply = client.chat.completions.create(
            model=MODEL_NAME,
            messages=MESSAGES,
            max_tokens=24,
            temperature=temperature,
            seed=seed,
            response_format={"type": "json_object"},
        )
        assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_metrics_exposed(server: tuple[str, object], client: openai.OpenAI) -> None:
    client.completions.create(model=MODEL_NAME, prompt="hi", max_tokens=2)
    text = httpx.get(server[0].removesuffix("/v1") + "/metrics").text
    for name in (
        "puyu:http_requests_total",
        "puyu:prompt_tokens_total",
        "puyu:generation_tokens_total",
        "puyu:num_requests_waiting",
        "puyu:num_requests_running",
        "puyu:kv_cache_usage_perc",
        "puyu:time_to_first_token_seconds_bucket",
        "puyu:inter_token_latency_seconds_bucket",
        "puyu:e2e_request_latency_seconds_count",
    ):
        assert name in text
    assert 'puyu:http_requests_total{endpoint="/v1/completions",status="200"}' in text


def _idle(url: str) -> bool:
    """The engine holds no request and no KV block, as /metrics reports it."""
    text = httpx.get(url.removesuffix("/v1") + "/metrics").text
    gauges = ("puyu:kv_blocks_used", "puyu:num_requests_running", "puyu:num_requests_waiting")
    values = [float(re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE).group(1)) for name in gauges]
    return values == [0.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def slow_server(model_folder: Path) -> Iterator[tuple[str, object]]:
    """Steps of at least 20 ms: a 900-token request would run for 18 s or more."""
    engine = engine_factory(model_folder, delay=0.02)()
    with live_server(create_app(engine, model_name=MODEL_NAME)) as url:
        yield url, engine


def _wait_idle(url: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not _idle(url) and time.monotonic() < deadline:
        time.sleep(0.02)
    return _idle(url)


LONG = {"model": MODEL_NAME, "prompt": "x" * 40, "max_tokens": 900, "ignore_eos": True}


def test_stream_disconnect_aborts_and_frees_blocks(slow_server: tuple[str, object]) -> None:
    url, engine = slow_server
    with (
        httpx.Client(timeout=30) as http,
        http.stream("POST", f"{url}/completions", json={**LONG, "stream": True}) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()  # kept: closing this iterator would close the connection
        assert next(line for line in lines if line.startswith("data:"))
        assert engine.stats().num_running == 1  # type: ignore[attr-defined]
        assert engine.stats().kv_blocks_used > 0  # type: ignore[attr-defined]
    # the connection is closed long before the request could have finished: it was aborted
    assert _wait_idle(url)


def test_non_stream_disconnect_aborts(slow_server: tuple[str, object]) -> None:
    url, _ = slow_server
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/completions", json=LONG, timeout=httpx.Timeout(30, read=0.5))
    assert _wait_idle(url)
