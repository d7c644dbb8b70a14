"""`puyu agent` and `puyu chat --tools` rendering and wiring, with a scripted model in place of a real one."""

from __future__ import annotations

import io
import json

import pytest

from puyu.agent.scripted import ScriptedModel
from puyu.cli import main
from puyu.client import ChatResult, ToolCall


def _script() -> ScriptedModel:
    return ScriptedModel(
        [ChatResult("Let me compute.", [ToolCall("calculator", {"expression": "6 * 7"}, id="c1")]), ChatResult("42.")]
    )


@pytest.fixture
def scripted(monkeypatch):
    model = _script()
    monkeypatch.setattr("puyu.client.load_client", lambda *args, **kwargs: model)
    return model


def test_one_shot_json_events(scripted, tmp_path, capsys):
    assert main(["agent", "anything", "What is 6 * 7?", "--json", "--workspace", str(tmp_path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["type"] for line in lines] == ["thought", "tool_call", "tool_result", "answer"]
    assert lines[2]["content"] == "42" and lines[-1] == {"type": "answer", "content": "42."}


def test_interactive_with_a_saved_session(scripted, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("What is 6 * 7?\n/exit\n"))
    session = tmp_path / "session.json"
    argv = ["agent", "anything", "--workspace", str(tmp_path), "--session", str(session)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert '→ calculator {"expression": "6 * 7"}' in out and "← 42" in out and out.rstrip().endswith("42.")
    saved = json.loads(session.read_text())
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant", "tool", "assistant"]


def test_chat_with_tools_answers_through_the_agent(scripted, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("What is 6 * 7?\n"))
    assert main(["chat", "anything", "--tools", "calculator"]) == 0
    out = capsys.readouterr().out
    assert "← 42" in out and "42." in out
    assert scripted.requests[0]["tools"][0]["function"]["name"] == "calculator"


def test_unknown_tool_is_a_one_line_error(scripted, capsys):
    assert main(["agent", "anything", "q", "--tools", "calculator,rm"]) == 2
    assert "unknown tool(s): rm" in capsys.readouterr().err
