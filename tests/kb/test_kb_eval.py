from __future__ import annotations

import json
from pathlib import Path

import pytest
from kb_support import ScriptedClient, write_corpus

from puyu.cli import main
from puyu.eval.kb_eval import evaluate_kb, source_matches
from puyu.kb import KnowledgeBase, build
from puyu.kb.assistant import Assistant
from puyu.kb.questions import calibrate_kb

QUESTIONS = [
    {"question": "what port does the server listen on", "answerable": True, "sources": ["guide.md"],
     "answer": "port 8000"},
    {"question": "how does BM25 rank documents", "answerable": True, "sources": ["notes.txt"], "answer": "rarity"},
    {"question": "知识库助手回答什么问题", "answerable": True, "sources": ["zh.txt"], "answer": None},
    {"question": "what does paged attention store", "answerable": True, "sources": ["rows.jsonl"], "answer": None},
    {"question": "recommend a pasta recipe", "answerable": False, "sources": [], "answer": None},
    {"question": "how tall is mount everest", "answerable": False, "sources": [], "answer": None},
    {"question": "今天天气怎么样", "answerable": False, "sources": [], "answer": None},
]  # fmt: skip


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    build([write_corpus(tmp_path / "docs")], tmp_path / "kb", chunk_size=120)
    return KnowledgeBase.open(tmp_path / "kb")


def test_retrieval_and_answer_metrics_by_hand(kb: KnowledgeBase) -> None:
    report = evaluate_kb(kb, QUESTIONS, k=1, assistant=Assistant(kb, ScriptedClient("It is port 8000 [1].")))
    ranks = []
    for item in QUESTIONS[:4]:
        hits = kb.search(item["question"], k=50, mode="bm25")
        ranks.append(next(r for r, h in enumerate(hits, 1) if source_matches(h.chunk.source, item["sources"][0])))
    assert report["retrieval"]["bm25"]["recall@1"] == pytest.approx(sum(r == 1 for r in ranks) / 4)
    assert report["retrieval"]["bm25"]["mrr"] == pytest.approx(sum(1 / r for r in ranks) / 4)
    # Graded: the two with gold answers; "port 8000" is contained in the reply, "rarity" is not.
    assert report["answers"] == {"questions": 2, "exact": 0.0, "contains": 0.5}
    assert report["rejection"] == {"gate": "off (not calibrated)"}


def test_rejection_metrics_follow_the_gate(kb: KnowledgeBase, tmp_path: Path, capsys) -> None:
    good = [q["question"] for q in QUESTIONS if q["answerable"]]
    bad = [q["question"] for q in QUESTIONS if not q["answerable"]]
    calibrate_kb(kb, good, bad, folds=2)
    report = evaluate_kb(kb, QUESTIONS)["rejection"]
    kb = KnowledgeBase.open(kb.snapshot.folder.parent)
    from puyu.kb.gate import accepts

    decided = [accepts(kb.snapshot.calibration, kb.signals(q["question"]))[0] for q in QUESTIONS]
    tp = sum(d and q["answerable"] for d, q in zip(decided, QUESTIONS, strict=True))
    assert report["precision"] == pytest.approx(tp / max(1, sum(decided)))
    assert report["recall"] == pytest.approx(tp / 4)
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(q) for q in QUESTIONS))
    assert main(["eval", "kb", str(kb.snapshot.folder.parent), "--questions", str(tmp_path / "q.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out)["rejection"]["gate"] == "calibrated"
    (tmp_path / "bad.jsonl").write_text('{"no_question": 1}\n')
    assert main(["eval", "kb", str(kb.snapshot.folder.parent), "--questions", str(tmp_path / "bad.jsonl")]) == 2


def test_source_matches() -> None:
    assert source_matches("/a/docs/serve.md", "serve.md") and source_matches("docs/serve.md", "docs/serve.md")
    assert not source_matches("/a/docs/preserve.md", "serve.md")
