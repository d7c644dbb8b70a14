"""Schemathesis over the server's own OpenAPI schema: valid and invalid requests of every operation, with
`model` pinned to the served name, never get a 5xx, and every error is OpenAI-shaped.

Bounded for CI; `PUYU_FUZZ_EXAMPLES=400 PUYU_FUZZ_REPORT=statuses.json pytest tests/serve/test_serve_schema_fuzz.py`
runs a long one and writes how many cases got each status.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from serve_support import MODEL_NAME, engine_factory, live_server

from puyu.serve.app import create_app

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402

EXAMPLES = int(os.environ.get("PUYU_FUZZ_EXAMPLES", "12"))
STATUSES: Counter[str] = Counter()  # "METHOD path mode status" -> cases
KEY = {"Authorization": "Bearer sesame"}
# Generation is bounded so that each case takes milliseconds: the point is the input, not long replies.
CAPS = {"max_tokens": 8, "max_completion_tokens": 8, "n": 2, "min_tokens": 8, "logprobs": 5}
OPERATIONS = [
    ("/v1/chat/completions", "POST"),
    ("/v1/completions", "POST"),
    ("/v1/models", "GET"),
    ("/health", "GET"),
    ("/metrics", "GET"),
]


@pytest.fixture(scope="module")
def served(model_folder: Path) -> Iterator[tuple[str, Any]]:
    app = create_app(engine_factory(model_folder)(), model_name=MODEL_NAME, api_key="sesame")
    with live_server(app) as url:
        yield url.removesuffix("/v1"), schemathesis.openapi.from_dict(app.openapi())
    report = os.environ.get("PUYU_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps(dict(sorted(STATUSES.items())), indent=1))


def _pin(body: Any, sampling_only: bool = False) -> None:
    """The served model's name, and caps on how much is generated; with `sampling_only` a fixed valid
    conversation too, so that every case reaches the engine with its generated sampling fields."""
    if not isinstance(body, dict):
        return
    body["model"] = MODEL_NAME
    body.setdefault("max_tokens", CAPS["max_tokens"])  # a chat reply without one may fill the context
    if sampling_only:
        if "messages" in body:
            body["messages"] = [{"role": "user", "content": "hi"}]
            body.pop("tools", None)
            body.pop("tool_choice", None)
        else:
            body["prompt"] = "hi"
    for key, cap in CAPS.items():
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > cap:
            body[key] = cap


def _check(response: requests.Response) -> None:
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and isinstance(error["message"], str)


POSTS = [(path, method) for path, method in OPERATIONS if method == "POST"]
CASES = [
    *((path, method, GenerationMode.POSITIVE, False) for path, method in OPERATIONS),
    # Only the POST operations take input that can be invalid.
    *((path, method, GenerationMode.NEGATIVE, False) for path, method in POSTS),
    # Generated sampling fields over a prompt the model takes: most of these reach the engine.
    *((path, method, GenerationMode.POSITIVE, True) for path, method in POSTS),
]


@pytest.mark.parametrize(("path", "method", "mode", "sampling_only"), CASES)
def test_no_server_errors(
    served: tuple[str, Any], path: str, method: str, mode: GenerationMode, sampling_only: bool
) -> None:
    base, schema = served
    operation = schema[path][method]
    session = requests.Session()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        _pin(case.body, sampling_only)
        response = case.call(base_url=base, session=session, headers=KEY, timeout=60)
        kind = "sampling" if sampling_only else mode.value
        STATUSES[f"{method} {path} {kind} {response.status_code}"] += 1
        _check(response)

    run()
