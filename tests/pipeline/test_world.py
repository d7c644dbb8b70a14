"""The synthetic world and its generated files: deterministic, valid, and held out where promised."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import pytest

from puyu.chat import ChatTemplate
from puyu.data.conversations import validate_chat_file
from puyu.pipeline.calculator import OPERATOR_WORDS, evaluate
from puyu.pipeline.corpus import dialogue_document, sum_drill_document, sum_table_documents, write_corpus
from puyu.pipeline.evalsets import excluded_keys, write_eval_sets
from puyu.pipeline.questions import RELATIONS
from puyu.pipeline.sft import build_sft, write_jsonl
from puyu.pipeline.world import World, build_world
from puyu.tokenizer.train import byte_level_tokenizer


def _generate(out: Path, seed: int) -> dict[str, str]:
    """Write every generated file for `seed`; returns their SHA-256 by relative path."""
    world = build_world(seed, "tiny")
    world.save(out / "world.json")
    write_corpus(world, out / "corpus", "tiny", seed)
    write_jsonl(build_sft(world, "tiny", seed, excluded_keys(seed, "tiny")), out / "sft.jsonl")
    write_eval_sets(world, out / "eval", seed, "tiny")
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*.*"))}


def test_same_seed_same_files_and_other_seed_other_files(tmp_path: Path) -> None:
    first, again, other = (_generate(tmp_path / name, seed) for name, seed in (("a", 3), ("b", 3), ("c", 4)))
    assert first == again
    assert first.keys() == other.keys()
    changed = {name for name in first if first[name] != other[name]}
    assert {"world.json", "sft.jsonl", "corpus/people_en.jsonl", "eval/facts_qa.jsonl"} <= changed


def test_world_round_trips_and_is_consistent(tmp_path: Path) -> None:
    world = build_world(7, "default")
    world.save(tmp_path / "w.json")
    assert World.load(tmp_path / "w.json") == world
    names = [p.name.en for p in world.people]
    assert len(set(names)) == len(names)
    assert all(p.friend != i for i, p in enumerate(world.people))
    assert all(world.cities[c.capital].country == i for i, c in enumerate(world.countries))
    assert 0 < len(world.held_out) < len(world.people)


def test_corpus_states_the_facts_the_sft_data_asks_about(tmp_path: Path) -> None:
    world = build_world(1, "tiny")
    write_corpus(world, tmp_path, "tiny", 1)
    corpus = "\n".join(json.loads(line)["text"] for f in tmp_path.glob("*.jsonl") for line in f.open())
    for person in world.people:
        for relation in RELATIONS:
            value = relation.value(world, person, "en")
            assert any(person.name.en in s and value in s for s in corpus.split(".")), (person.name.en, relation.name)


def test_sft_file_validates_and_tool_turns_render_with_internlm2_template(tmp_path: Path) -> None:
    world = build_world(0, "tiny")
    records = build_sft(world, "tiny", 0, excluded_keys(0, "tiny"))
    write_jsonl(records, tmp_path / "sft.jsonl")
    report = validate_chat_file(tmp_path / "sft.jsonl")
    assert report.errors == []
    assert (report.converted, report.invalid, dict(report.warnings)) == (len(records), 0, {})

    template = ChatTemplate.for_model(byte_level_tokenizer("internlm2"), "internlm2")
    with_tools = [r for r in records if any(m.get("tool_calls") for m in r["messages"])]
    assert with_tools
    for record in with_tools:
        rendered = template.render(record["messages"], tools=record["tools"])
        call = record["messages"][1]["tool_calls"][0]["function"]
        expected = json.dumps({"name": "calculator", "parameters": call["arguments"]})
        assert f"<|action_start|><|plugin|>\n{expected}<|action_end|>" in rendered.text
        assert "<|im_start|>environment name=<|plugin|>\n" in rendered.text
        # The call and the final answer are trained on; the tool result is not.
        trained = "".join(rendered.text[a:b] for a, b in rendered.assistant_spans)
        assert expected in trained
        assert record["messages"][3]["content"] in trained
        result = record["messages"][2]["content"]
        assert int(result) == evaluate(call["arguments"]["expression"])


def test_eval_sets_hold_out_questions_people_and_arithmetic(tmp_path: Path) -> None:
    world = build_world(0, "default")
    records = build_sft(world, "default", 0, excluded_keys(0, "default"))
    write_eval_sets(world, tmp_path, 0, "default")
    sft_questions = {m["content"] for r in records for m in r["messages"] if m["role"] == "user"}
    sft_text = "\n".join(sft_questions)
    held = {world.people[i].name.en for i in world.held_out} | {world.people[i].name.zh for i in world.held_out}
    rows = {
        name: [json.loads(line) for line in (tmp_path / f"{name}.jsonl").open()]
        for name in ("facts_qa", "facts_paraphrase", "facts_mc", "sums_qa", "tool_requests")
    }
    for name, items in rows.items():
        assert items, name
        for row in items:
            assert row["question"] not in sft_questions, row
    # No held-out person is asked about in SFT, and every fact question is about a held-out person.
    assert not any(name in sft_text for name in held)
    for row in rows["facts_qa"] + rows["facts_paraphrase"] + rows["facts_mc"]:
        assert any(name in row["question"] for name in held)
    # The corpus describes held-out people but no document asks about them.
    write_corpus(world, tmp_path / "corpus", "default", 0)
    asked = [
        part.split(" Answer: ")[0]
        for line in (tmp_path / "corpus" / "people_qa.jsonl").open(encoding="utf-8")
        for part in json.loads(line)["text"].split("Question: ")[1:]
    ]
    bios = (tmp_path / "corpus" / "people_en.jsonl").read_text(encoding="utf-8")
    assert len(asked) > 100
    assert all(name in bios and not any(name in q for q in asked) for name in held if name.isascii())
    # Sums are asked in wordings SFT never uses, whatever the numbers.
    sft_wordings = {re.sub(r"\d", "#", q) for q in sft_questions}
    assert not any(re.sub(r"\d", "#", row["question"]) in sft_wordings for row in rows["sums_qa"])
    # Held-out calculator expressions never occur in SFT questions.
    for row in rows["tool_requests"]:
        assert row["expression"] not in sft_text
        assert str(evaluate(row["expression"])) == row["answer"]
    for row in rows["facts_mc"]:
        assert row["choices"][ord(row["answer"]) - ord("A")] in {
            r.value(world, p, "en") for r in RELATIONS for p in world.people
        }


def test_corpus_calculator_lines_copy_the_request_into_a_valid_call(tmp_path: Path) -> None:
    world = build_world(2, "tiny")
    write_corpus(world, tmp_path, "tiny", 2)
    lines = [line for doc in (tmp_path / "calculator.jsonl").open() for line in json.loads(doc)["text"].splitlines()]
    assert len(lines) >= 10
    for line in lines:
        request, call = line[: line.index("{")], line[line.index("{") :]
        expression = json.loads(call)["parameters"]["expression"]
        a, _, b = expression.split(" ")
        assert f"{a} " in request and f" {b}" in request and evaluate(expression) is not None


def test_corpus_copying_lines_repeat_fresh_strings_and_tables_hold_every_sum(tmp_path: Path) -> None:
    world = build_world(0, "tiny")
    write_corpus(world, tmp_path, "tiny", 0)
    lines = [line for doc in (tmp_path / "copying.jsonl").open() for line in json.loads(doc)["text"].splitlines()]
    assert len(lines) >= 50
    for line in lines:
        # The copied item (digits, an expression's numbers or a name) is stated twice in its line.
        if line.startswith("Ticket "):
            items = [line.split(" belongs to ")[1].split(".")[0]]
        else:
            items = re.findall(r"\d+", line)
        assert items and all(line.count(item) >= 2 for item in items), line
    codes = [line.split()[3].rstrip(".") for line in lines if line.startswith("The code is ")]
    assert len(set(codes)) == len(codes) > 5  # fresh every time: nothing to memorise
    tables = sum_table_documents(random.Random(0))
    assert len(tables) == len(set(tables)) == 60
    assert all(sum(f"{a} + {b} = {a + b}." in t for t in tables) == 6 for a in range(10) for b in range(10))


def test_sum_drills_state_each_answer_once_after_its_operands() -> None:
    # Every statement in a drill is one of these shapes: only the operands come before the answer.
    statement = re.compile(
        r"(\d) \+ (\d) = (\d+)\."
        r"|(\d) plus (\d) is (\d+)\."
        r"|What is (\d) plus (\d)\? \7 \+ \8 = (\d+)\."
        r"|Add (\d) and (\d): \10 \+ \11 = (\d+)\."
    )
    rng = random.Random(0)
    pairs = set()
    for _ in range(40):
        header, _, body = sum_drill_document(rng).partition(". ")
        assert "the answer" in header  # stop words for the data stage's language filters
        matches = list(statement.finditer(body))
        assert " ".join(m[0] for m in matches) == body
        for m in matches:
            a, b, c = (int(x) for x in m.groups() if x is not None)
            assert a + b == c
            pairs.add((a, b))
    assert pairs == {(a, b) for a in range(10) for b in range(10)}


def test_dialogues_are_chat_transcripts_that_say_back_fresh_items() -> None:
    world = build_world(0, "tiny")
    names = world.fresh_names(random.Random(1))
    text = dialogue_document(random.Random(0), names, exchanges=40)
    turns = re.findall(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>\n", text, re.S)
    assert "".join(f"<|im_start|>{role}\n{body}<|im_end|>\n" for role, body in turns) == text
    assert [role for role, _ in turns] == ["system"] + ["user", "assistant"] * 40
    kinds = set()
    for (_, request), (_, reply) in zip(turns[1::2], turns[2::2], strict=True):
        if reply in request:
            kinds.add("digits" if reply.isdigit() else "expression" if " " in reply and reply[0].isdigit() else "name")
        else:  # an expression in words comes back in symbols
            a, op, b = reply.split()
            assert f"{a} {OPERATOR_WORDS[op]} {b}" in request
            kinds.add("words")
    assert kinds == {"digits", "name", "expression", "words"}
    world_names = {p.name.en for p in world.people}
    assert not any(reply in world_names for _, reply in turns[2::2])


@pytest.mark.parametrize("bad", ["__import__('os')", "2 ** 8", "a + 1", "1 +"])
def test_calculator_refuses_anything_but_integer_arithmetic(bad: str) -> None:
    from puyu.errors import PuyuError

    with pytest.raises(PuyuError):
        evaluate(bad)
    assert evaluate("37 * 12 - -3") == 447
