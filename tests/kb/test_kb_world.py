from __future__ import annotations

from pathlib import Path

from puyu.eval.kb_eval import evaluate_kb
from puyu.kb import KnowledgeBase, build
from puyu.pipeline.world import build_world
from puyu.pipeline.world_kb import world_questions, write_world_documents


def test_the_world_knowledge_base_finds_each_person(tmp_path: Path) -> None:
    world = build_world(0, "tiny")
    paths = write_world_documents(world, tmp_path / "docs")
    assert len(paths) == len(world.people)
    build([tmp_path / "docs"], tmp_path / "kb")
    questions = world_questions(world)
    good = [q for q in questions if q["answerable"]]
    assert len(good) == 2 * len(world.people) == len(questions) - len(good)
    known = {p.name.en for p in world.people}
    strangers = [q["question"] for q in questions if not q["answerable"] and "does " in q["question"]]
    assert strangers and not any(name in q for q in strangers for name in known)
    report = evaluate_kb(KnowledgeBase.open(tmp_path / "kb"), questions, k=1)
    assert report["retrieval"]["bm25"]["recall@1"] == 1.0
