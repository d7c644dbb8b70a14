"""`POST /v1/agent` against a live `puyu serve` app: the real engine (a tiny model made to write InternLM2 tool-call
markup), the real OpenAI client inside the agent, server-sent step events, artifacts, and errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
serve_support = pytest.importorskip("serve_support")

from puyu.serve.app import create_app  # noqa: E402

ANSWER = "The answer is 42."
CALCULATOR_CALL = (
    '<|action_start|><|plugin|>\n{"name": "calculator", "parameters": {"expression": "6 * 7"}}<|action_end|>'
)
PYTHON_CALL = (
    '<|action_start|><|plugin|>\n{"name": "python", "parameters": {"code": '
    "\"open('note.txt', 'w').write('hello')\"}}<|action_end|>"
)


FINAL_ANSWER_CALL = '<|action_start|><|plugin|>\n{"name": "final_answer", "parameters": {"answer": "42"}}<|action_end|>'


def script(prompt: str) -> str | None:
    if '"final_answer"' in prompt:
        # smolagents' ToolCallingAgent: its tool results come back as user "Observation:" turns, and it ends by
        # calling its own final_answer tool.
        return FINAL_ANSWER_CALL if "Observation:" in prompt else "Let me compute." + CALCULATOR_CALL
    if "<|im_start|>environment" in prompt:
        return ANSWER
    if "<|plugin|>\n[" in prompt or "你可以使用如下工具" in prompt:  # the template's tools, or Lagent's plugin prompt
        return "Let me compute." + (PYTHON_CALL if "write a note" in prompt else CALCULATOR_CALL)
    return None


@pytest.fixture(scope="module")
def base_url(tmp_path_factory) -> Iterator[str]:
    # smolagents' system prompt alone is ~4k tokens.
    folder = serve_support.make_model_folder(
        tmp_path_factory.mktemp("agent-http") / "tiny", max_position_embeddings=8192
    )
    engine = serve_support.engine_factory(folder, script=script, num_blocks=1024)()
    workspace = tmp_path_factory.mktemp("agent-workspaces")
    app = create_app(
        engine,
        model_name=serve_support.MODEL_NAME,
        api_key="secret",
        agent_tools=["calculator", "python"],
        agent_workspace=str(workspace),
    )
    with serve_support.live_server(app) as url:
        yield url.removesuffix("/v1")
    # The server stopped its sessions' interpreter kernels on shutdown.
    sessions = app.state.puyu_agent_sessions.live.values()
    assert all(session.context.state.get("sandbox") is None for session in sessions)


HEADERS = {"Authorization": "Bearer secret"}


def _events(base_url: str, body: dict) -> list[dict | str]:
    events: list[dict | str] = []
    with httpx.stream("POST", f"{base_url}/v1/agent", json=body, headers=HEADERS, timeout=120) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                payload = line[len("data: ") :]
                events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_agent_streams_step_events(base_url):
    body = {"messages": [{"role": "user", "content": "What is 6 * 7?"}], "tools": ["calculator"], "protocol": "openai"}
    streamed = _events(base_url, body)
    tokens = "".join(e["content"] for e in streamed if isinstance(e, dict) and e["type"] == "token")
    assert tokens == "Let me compute." + ANSWER  # the model's text as it streamed, tool markup held back
    events = [e for e in streamed if not (isinstance(e, dict) and e["type"] == "token")]
    assert [e if isinstance(e, str) else e["type"] for e in events] == [
        "thought",
        "tool_call",
        "tool_result",
        "answer",
        "[DONE]",
    ]
    call, result, answer = events[1], events[2], events[3]
    assert (call["name"], call["arguments"]) == ("calculator", {"expression": "6 * 7"})
    assert (result["id"], result["content"], result["error"], result["artifacts"]) == (call["id"], "42", False, [])
    assert answer["content"] == ANSWER


def test_artifacts_are_fetchable_with_the_api_key(base_url):
    body = {"messages": [{"role": "user", "content": "write a note"}], "session_id": "s1", "protocol": "openai"}
    events = _events(base_url, body)
    result = next(e for e in events if isinstance(e, dict) and e["type"] == "tool_result")
    assert not result["error"], result
    (artifact,) = result["artifacts"]
    assert artifact == {"name": "note.txt", "mime": "text/plain", "url": "/v1/agent/artifacts/s1/note.txt"}
    assert httpx.get(base_url + artifact["url"], headers=HEADERS).text == "hello"
    assert httpx.get(base_url + artifact["url"]).status_code == 401
    assert httpx.get(f"{base_url}/v1/agent/artifacts/s1/..%2F..%2Fetc%2Fpasswd", headers=HEADERS).status_code == 404


def test_tools_listing(base_url):
    data = httpx.get(f"{base_url}/v1/agent/tools", headers=HEADERS).json()["data"]
    assert [tool["name"] for tool in data] == ["calculator", "python"]
    assert data[0]["parameters"]["required"] == ["expression"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}], "tools": ["rm"]}, "tools"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}], "session_id": "../up"}, "session_id"),
        ({"messages": [{"role": "user", "content": "x"}], "max_turns": 1000}, "max_turns"),
    ],
)
def test_bad_requests_fail_alone_with_openai_shaped_errors(base_url, body, param):
    response = httpx.post(f"{base_url}/v1/agent", json=body, headers=HEADERS)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param or param in (error["param"] or "") or param in error["message"]


@pytest.mark.filterwarnings("ignore:Function 'calculator' has decorators other than @tool")
def test_smolagents_tool_calling_agent_round_trip(base_url):
    smolagents = pytest.importorskip("smolagents")
    from puyu.agent.calculator import calculate

    @smolagents.tool
    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression.

        Args:
            expression: the arithmetic expression.
        """
        return calculate(expression)

    model = smolagents.OpenAIServerModel(model_id=serve_support.MODEL_NAME, api_base=base_url + "/v1", api_key="secret")
    agent = smolagents.ToolCallingAgent(tools=[calculator], model=model, max_steps=3, verbosity_level=0)
    assert str(agent.run("What is 6 * 7?")) == "42"
    observations = [step.observations for step in agent.memory.steps if getattr(step, "observations", None)]
    assert any("42" in text for text in observations)


def test_cli_agent_against_the_served_model(base_url, tmp_path, capsys):
    from puyu.cli import main

    argv = ["agent", base_url, "What is 6 * 7?", "--json", "--api-key", "secret", "--protocol", "openai"]
    assert main([*argv, "--workspace", str(tmp_path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["type"] for line in lines] == ["thought", "tool_call", "tool_result", "answer"]
    assert lines[-1] == {"type": "answer", "content": ANSWER}


def test_session_leases(tmp_path, monkeypatch):
    from puyu.serve import agent_routes

    sessions = agent_routes._Sessions(tmp_path)
    session = sessions.get("s")
    assert sessions.get("s") is session and not sessions.is_busy("s")
    sessions.busy["s"] = agent_routes.time.monotonic()
    assert sessions.is_busy("s")
    sessions.busy["s"] -= agent_routes.BUSY_LEASE_SECONDS + 1  # a client that vanished long ago
    assert not sessions.is_busy("s")


def test_internlm2_text_protocol_through_the_completions_endpoint(base_url):
    body = {
        "messages": [{"role": "user", "content": "What is 6 * 7?"}],
        "tools": ["calculator"],
        "protocol": "internlm2",
    }
    events = [e for e in _events(base_url, body) if isinstance(e, str) or e["type"] != "token"]
    assert [e if isinstance(e, str) else e["type"] for e in events] == [
        "thought",
        "tool_call",
        "tool_result",
        "answer",
        "[DONE]",
    ]
    assert events[1]["arguments"] == {"expression": "6 * 7"} and events[2]["content"] == "42"
    assert events[3]["content"] == ANSWER
