"""The multi-hop set: each answer is stated by its last document, and the subject's own document does not
state it (save by coincidence)."""

from __future__ import annotations

from pathlib import Path

from puyu.pipeline.world import build_world
from puyu.search.multihop import is_correct, multihop_questions, write_documents


def test_questions_need_every_hop(tmp_path: Path) -> None:
    world = build_world(seed=3, size="tiny")
    write_documents(world, tmp_path)
    questions = multihop_questions(world, 12, seed=1)
    assert [q.hops for q in questions[:4]] == [2, 2, 3, 3]
    alone = 0
    for q in questions:
        texts = [(tmp_path / name).read_text() for name in q.documents]
        assert len(q.documents) == q.hops
        assert q.answer in texts[-1]  # the last hop states the answer
        alone += q.answer in texts[0]  # only by coincidence (the friend shares the subject's job, ...)
    assert alone <= len(questions) // 4
    assert len(list(tmp_path.iterdir())) == len(world.people) + len(world.cities) + len(world.countries)


def test_answer_matching() -> None:
    assert is_correct("The capital is Bazo.", "Bazo")
    assert not is_correct("The capital is Bazolan.", "Bazo")
    assert is_correct("a TEACHER", "teacher")
