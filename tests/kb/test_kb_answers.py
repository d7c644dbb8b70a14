from __future__ import annotations

import json
from pathlib import Path

import pytest
from kb_support import OFF_TOPIC, ON_TOPIC, ScriptedClient, write_corpus

from puyu.cli import main
from puyu.kb import KnowledgeBase, build
from puyu.kb.answer import cited_numbers
from puyu.kb.assistant import Assistant
from puyu.kb.questions import calibrate_kb


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    build([write_corpus(tmp_path / "docs")], tmp_path / "kb", chunk_size=120)
    return KnowledgeBase.open(tmp_path / "kb")


def test_citations_map_to_the_cited_spans(kb: KnowledgeBase) -> None:
    client = ScriptedClient("It listens on port 8000 [1]. Streaming uses events [2][9].")
    answer = Assistant(kb, client, k=3).ask("what port does the server listen on")
    assert not answer.rejected and answer.gate == "off (not calibrated)"
    hits = kb.search("what port does the server listen on", k=3)
    assert [c.n for c in answer.citations] == [1, 2]
    for citation in answer.citations:
        chunk = hits[citation.n - 1].chunk
        assert (citation.chunk_id, citation.start, citation.end, citation.text) == (
            chunk.id, chunk.start, chunk.end, chunk.text)  # fmt: skip
        assert Path(citation.source).read_text()[citation.start : citation.end] == citation.text
    prompt = client.calls[-1][-1]["content"]
    assert prompt.startswith("Sources:\n\n[1] (") and f"[{len(hits)}] (" in prompt


def test_an_answer_without_citations_lists_all_sources_as_uncited(kb: KnowledgeBase) -> None:
    answer = Assistant(kb, ScriptedClient("Port 8000."), k=2).ask("what port does the server listen on")
    assert [(c.n, c.cited) for c in answer.citations] == [(1, False), (2, False)]


def test_cited_numbers() -> None:
    assert cited_numbers("a [2] b [1, 3] c [2] d [7] [0]", 3) == [2, 1, 3]


def test_the_calibrated_gate_refuses_off_topic_questions(kb: KnowledgeBase) -> None:
    calibrate_kb(kb, ON_TOPIC, OFF_TOPIC, folds=3)
    client = ScriptedClient("Port 8000 [1].")
    assistant = Assistant(kb, client)
    refused = assistant.ask("how tall is mount everest")
    assert refused.rejected and refused.reason == "unrelated" and refused.answer == "" and refused.score < 0.5
    assert client.calls == []  # the model is never asked
    accepted = assistant.ask("what port does the server listen on")
    assert not accepted.rejected and accepted.score >= 0.5 and accepted.gate == "calibrated"
    assert Assistant(kb, client, use_gate=False).ask("how tall is mount everest").reason == "no_search_result"


@pytest.mark.parametrize(
    ("checks", "replies", "reason"),
    [
        (["relevance"], {"how well the sources": "3"}, "irrelevant"),
        (["relevance"], {"how well the sources": "no number"}, None),  # a parse failure passes, as in HuixiangDou
        (["unknown"], {"does not know": "9"}, "bad_answer"),
        (["safety"], {"politics": "8"}, "security"),
        (["unknown", "safety"], {"does not know": "2", "politics": "1"}, None),
    ],
)
def test_llm_checks(kb: KnowledgeBase, checks: list[str], replies: dict[str, str], reason: str | None) -> None:
    answer = Assistant(kb, ScriptedClient("Port 8000 [1].", replies), checks=checks).ask("server port")
    assert answer.reason == reason and answer.rejected == (reason is not None)
    assert (answer.answer == "") == answer.rejected


def test_empty_kb_and_no_result(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    build([tmp_path / "docs"], tmp_path / "empty")
    answer = Assistant(KnowledgeBase.open(tmp_path / "empty"), ScriptedClient("x")).ask("anything")
    assert answer.rejected and answer.reason == "empty_kb"
    build([write_corpus(tmp_path / "d2")], tmp_path / "kb")
    answer = Assistant(KnowledgeBase.open(tmp_path / "kb"), ScriptedClient("x")).ask("zzzz qqqq")
    assert answer.rejected and answer.reason == "no_search_result"


def test_history_goes_before_the_sources(kb: KnowledgeBase) -> None:
    client = ScriptedClient("ok [1]")
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    Assistant(kb, client).ask("server port", history)
    assert [m["role"] for m in client.calls[-1]] == ["system", "user", "assistant", "user"]


def test_ask_cli_json_shape(tmp_path: Path, monkeypatch, capsys) -> None:
    import puyu.client

    build([write_corpus(tmp_path / "docs")], tmp_path / "kb")
    monkeypatch.setattr(puyu.client, "load_client", lambda *a, **k: ScriptedClient("Port 8000 [1]."))
    assert main(["kb", "ask", str(tmp_path / "kb"), "server port", "--api", "http://127.0.0.1:1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"question", "rejected", "reason", "score", "answer", "citations"} <= set(out)
    assert set(out["citations"][0]) >= {"n", "source", "start", "end", "text", "chunk_id"}
    assert main(["kb", "ask", str(tmp_path / "kb"), "server port", "--api", "http://x", "--k", "0"]) == 2


def test_chat_cli_keeps_history_and_ends_on_a_blank_line(tmp_path: Path, monkeypatch, capsys) -> None:
    import puyu.client

    build([write_corpus(tmp_path / "docs")], tmp_path / "kb")
    client = ScriptedClient("Port 8000 [1].")
    monkeypatch.setattr(puyu.client, "load_client", lambda *a, **k: client)
    lines = iter(["server port", "and streaming?", ""])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["kb", "chat", str(tmp_path / "kb"), "--api", "http://127.0.0.1:1"]) == 0
    out = capsys.readouterr()
    assert out.out.count("Port 8000 [1].") == 2 and "[1] " in out.out and "gate is off" in out.err
    assert [m["role"] for m in client.calls[-1]] == ["system", "user", "assistant", "user"]


class RelevanceJudge(ScriptedClient):
    """Rates the sources 9 for on-topic questions and 1 for the others."""

    def _check_reply(self, messages: list[dict]) -> str:
        text = messages[-1]["content"]
        return "9" if any(f"Question: {q}\n" in text for q in ON_TOPIC) else "1"


def test_an_llm_relevance_signal_is_calibrated_and_asked_before_the_gate(kb: KnowledgeBase) -> None:
    judge = RelevanceJudge("Port 8000 [1].")
    calibration = calibrate_kb(kb, ON_TOPIC, OFF_TOPIC, folds=3, client=judge)
    assert "llm" in calibration["features"] and calibration["cv"]["f1"] > 0.8
    judge.calls.clear()
    answer = Assistant(kb, judge).ask(ON_TOPIC[0])
    assert not answer.rejected and "how well the sources" in judge.calls[0][-1]["content"]
    assert Assistant(kb, judge).ask(OFF_TOPIC[0]).reason == "unrelated"


def test_the_knowledge_base_as_an_agent_tool(tmp_path: Path) -> None:
    from puyu.kb.tool import kb_agent_tool

    build([write_corpus(tmp_path / "docs")], tmp_path / "kb", chunk_size=120)
    search = kb_agent_tool(tmp_path / "kb")
    spec = search.spec()
    assert spec["function"]["name"] == "kb_search"
    assert spec["function"]["parameters"]["required"] == ["query"]
    arguments = search.validate({"query": "what port does the server listen on", "k": 2})
    results = json.loads(search.fn(**arguments))["results"]
    expected = KnowledgeBase.open(tmp_path / "kb").search("what port does the server listen on", k=2)
    assert [r["chunk_id"] for r in results] == [h.chunk.id for h in expected]
