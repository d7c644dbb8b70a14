from __future__ import annotations

import json
from pathlib import Path

from kb_support import write_corpus

from puyu.kb import KnowledgeBase, build
from puyu.kb.tool import KbSearchTool


def test_search_tool_spec_and_hostile_arguments(tmp_path: Path) -> None:
    build([write_corpus(tmp_path / "docs")], tmp_path / "kb")
    tool = KbSearchTool(KnowledgeBase.open(tmp_path / "kb"), description="puyu's notes")
    assert tool.spec["function"]["name"] == "kb_search" and "query" in tool.spec["function"]["parameters"]["required"]
    results = json.loads(tool('{"query": "paged attention", "k": 1}'))["results"]
    assert len(results) == 1 and results[0]["source"].endswith("rows.jsonl") and results[0]["n"] == 1
    assert len(json.loads(tool({"query": "blocks", "k": 10**9}))["results"]) <= 10
    for bad in ("not json", {"query": ""}, {"query": 3}, ["query"]):
        assert "error" in json.loads(tool(bad))
