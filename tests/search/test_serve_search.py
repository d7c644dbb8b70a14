"""Search over HTTP on a live `puyu serve` whose scripted model answers every step: `POST /v1/search` read as
SSE by httpx, `/solve` in MindSearch's shape, the chat facade through the official `openai` client, errors in
OpenAI's shape, and a client that leaves cancelling the search."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fakes import PAGES, QUESTION

from puyu.serve.app import create_app

openai = pytest.importorskip("openai")
serve_support = pytest.importorskip("serve_support", reason="the server test support is not available")


def sse(lines: Iterator[str]) -> list[dict | str]:
    events: list[dict | str] = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_search_streams_the_contract_events(server: tuple[str, dict]) -> None:
    url, _ = server
    with httpx.stream("POST", f"{url}/search", json={"question": QUESTION}, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse(response.iter_lines())
    assert events[-1] == "[DONE]"
    body = [e for e in events if isinstance(e, dict)]
    assert {e["type"] for e in body} == {"node", "node_token", "node_done", "token", "references", "answer"}
    nodes = [e["node"] for e in body if e["type"] == "node"]
    assert all(set(n) == {"id", "question", "depends_on", "state"} for n in nodes)
    assert {n["id"]: n["depends_on"] for n in nodes if n["state"] == "pending"} == {
        "born": [],
        "bob": [],
        "river": ["born"],
    }
    answer = next(e for e in body if e["type"] == "answer")["content"]
    assert answer == "".join(e["content"] for e in body if e["type"] == "token")
    assert answer == "Alice was born in Lyon [[1]][[2]]."
    references = next(e for e in body if e["type"] == "references")["references"]
    assert [r["n"] for r in references] == [1, 2]
    assert all(set(r) == {"n", "title", "url", "source", "start", "end"} and r["url"] in PAGES for r in references)


def test_solve_speaks_mindsearch(server: tuple[str, dict]) -> None:
    url, _ = server
    root = url.removesuffix("/v1")
    with httpx.stream("POST", f"{root}/solve", json={"inputs": QUESTION, "session_id": 7}, timeout=120) as response:
        assert response.status_code == 200
        payloads = sse(response.iter_lines())
    assert all(isinstance(p, dict) and set(p) == {"current_node", "response"} for p in payloads)
    node_payload = next(p for p in payloads if p["current_node"] == "river")
    assert node_payload["response"]["formatted"]["node"]["river"]["content"] == "Which river flows through Lyon?"
    last = payloads[-1]["response"]
    assert last["stream_state"] == 0 and last["content"] == "Alice was born in Lyon [[1]][[2]]."
    adjacency = last["formatted"]["adjacency_list"]
    assert {e["name"] for e in adjacency["root"]} == {"born", "bob"}
    assert [e["name"] for e in adjacency["born"]] == ["river"]
    assert any(e["name"] == "response" for edges in adjacency.values() for e in edges)
    assert set(last["formatted"]["ref2url"]) == {"1", "2"}


def test_chat_facade_through_the_official_client(server: tuple[str, dict]) -> None:
    url, _ = server
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=120)
    reply = client.chat.completions.create(model="search", messages=[{"role": "user", "content": QUESTION}])
    content = reply.choices[0].message.content or ""
    assert content.startswith("Alice was born in Lyon [[1]][[2]].\n\nReferences:\n[1] ")
    assert len(reply.choices[0].message.model_extra["references"]) == 2
    pieces = client.chat.completions.create(
        model="search", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    chunks = list(pieces)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == content
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_errors_are_openai_shaped(server: tuple[str, dict]) -> None:
    url, _ = server
    cases = [
        ({"question": QUESTION, "backend": "https://evil.example"}, 400, "backend"),
        ({"question": QUESTION, "model": "other"}, 404, "model"),
        ({"question": ""}, 400, None),
        ({"question": "x" * 5000}, 400, None),
    ]
    for body, status, param in cases:
        response = httpx.post(f"{url}/search", json=body, timeout=30)
        assert response.status_code == status, body
        error = response.json()["error"]
        assert error["message"] and (param is None or error["param"] == param)
    root = url.removesuffix("/v1")
    assert httpx.post(f"{root}/solve", json={"inputs": []}, timeout=30).status_code == 400


def test_search_disabled_is_a_clear_400(tmp_path: Path) -> None:
    folder = serve_support.make_model_folder(tmp_path / "tiny")
    app = create_app(serve_support.engine_factory(folder)(), model_name="tiny")
    with serve_support.live_server(app) as url:
        response = httpx.post(f"{url}/search", json={"question": QUESTION}, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["code"] == "search_disabled"


def test_leaving_client_cancels_the_search(server: tuple[str, dict]) -> None:
    url, backends = server
    slow = backends["slow"]
    with httpx.Client(timeout=60) as http:
        request = http.build_request("POST", f"{url}/search", json={"question": QUESTION, "backend": "slow"})
        response = http.send(request, stream=True)
        lines = response.iter_lines()  # kept: a dropped iterator closes the response at once
        for line in lines:
            if line.startswith("data: ") and '"running"' in line:
                break
        deadline = time.monotonic() + 30
        while not slow.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slow.in_flight  # the nodes wait on the backend: now the client goes away
        response.close()
        del lines
    deadline = time.monotonic() + 20
    while (slow.in_flight or not slow.cancelled) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert slow.cancelled >= 1 and slow.in_flight == 0
