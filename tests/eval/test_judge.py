"""LLM-as-a-judge: prompts, parsing judge outputs, the position swap, summaries, files and resume."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
from needle_judge_support import ScriptedModel, served, tiny_model_folder

from puyu.errors import PuyuError
from puyu.eval.judge import (
    JudgeItem,
    combine_verdicts,
    judge_items,
    load_pairwise_items,
    load_single_items,
    pairwise_messages,
    parse_rating,
    parse_verdict,
    run_judge,
    single_messages,
    summarize_pairwise,
    summarize_single,
)
from puyu.generation.sampling import SamplingParams

# ---------------------------------------------------------------------------------------------- prompts


def test_single_prompt_holds_question_answer_and_format() -> None:
    system, user = single_messages("What is 2+2?", "It is 4.")
    assert system["role"] == "system" and user["role"] == "user"
    content = user["content"]
    assert "[Question]\nWhat is 2+2?" in content
    assert "[The Start of Assistant's Answer]\nIt is 4.\n[The End of Assistant's Answer]" in content
    assert '"[[rating]]"' in content and "1 to 10" in content
    assert "Reference" not in content
    guided = single_messages("What is 2+2?", "It is 5.", reference="4")[1]["content"]
    assert "[The Start of Reference Answer]\n4\n[The End of Reference Answer]" in guided
    assert guided.index("Reference Answer") < guided.index("Assistant's Answer")


def test_pairwise_prompt_shows_the_answers_in_the_given_order() -> None:
    system, user = pairwise_messages("Q?", "first answer", "second answer")
    assert '"[[A]]"' in system["content"] and '"[[B]]"' in system["content"] and '"[[C]]"' in system["content"]
    content = user["content"]
    assert content.startswith("[User Question]\nQ?\n\n")
    assert "[The Start of Assistant A's Answer]\nfirst answer\n[The End of Assistant A's Answer]" in content
    assert "[The Start of Assistant B's Answer]\nsecond answer\n[The End of Assistant B's Answer]" in content
    assert content.index("first answer") < content.index("second answer")
    assert "Reference" not in content
    assert "[The Start of Reference Answer]\nR\n" in pairwise_messages("Q?", "x", "y", reference="R")[1]["content"]


# ---------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("The answer is correct and concise. Rating: [[8]]", 8.0),
        ("Rating: [[ 7 ]]", 7.0),
        ("Rating: [[7.5]]", 7.5),
        ("Rating: [[6/10]]", 6.0),
        ("**Rating: [[9]]**", 9.0),
        ("Rating: [[**9**]]", 9.0),
        ('I must answer in the format "[[5]]". Having read it, Rating: [[3]]', 3.0),  # the last one counts
        ("Rating: [10]", 10.0),
        ("Rating: 4", 4.0),
        ("My score is 6.", 6.0),
        ("I'd give this 7/10.", 7.0),
        ("Overall: 8 out of 10", 8.0),
        ("Rating: [[11]]", None),  # out of range
        ("Rating: [[0]]", None),
        ("Rating: [[rating]]", None),
        ("A thoughtful answer, but no rating given.", None),
        ("", None),
    ],
)
def test_parse_rating(text: str, rating: float | None) -> None:
    assert parse_rating(text) == rating


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("Assistant A is more accurate. [[A]]", "A"),
        ("Final verdict: [[B]]", "B"),
        ("Both are equally good. [[C]]", "C"),
        ("[[ b ]]", "B"),
        ("[[tie]]", "C"),
        ("**[[A]]**", "A"),
        ('Format: "[[A]]" if A is better, "[[B]]" if B is better, "[[C]]" for a tie. My verdict: [[B]]', "B"),
        ("Verdict: [A]", "A"),
        ("My final verdict is: B", "B"),
        ("Final verdict: tie", "C"),
        ("Assistant A wins.", None),
        ("[[D]]", None),
        ("", None),
    ],
)
def test_parse_verdict(text: str, verdict: str | None) -> None:
    assert parse_verdict(text) == verdict


@pytest.mark.parametrize(
    ("first", "swapped", "expected"),
    [
        ("A", "B", ("a", True)),  # a is better in both orders
        ("B", "A", ("b", True)),
        ("C", "C", ("tie", True)),
        ("A", "A", ("tie", False)),  # always the first position: position bias, not a preference
        ("B", "B", ("tie", False)),
        ("A", "C", ("tie", False)),
        (None, "B", ("error", False)),
        ("A", None, ("error", False)),
    ],
)
def test_combine_verdicts(first: str | None, swapped: str | None, expected: tuple[str, bool]) -> None:
    assert combine_verdicts(first, swapped) == expected


# ---------------------------------------------------------------------------------------------- inputs


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_load_items_accepts_aliases_and_ids(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "answers.jsonl",
        [{"question": "q1", "answer": "a1"}, {"id": "x", "prompt": "q2", "prediction": "a2", "reference": "r2"}],
    )
    assert load_single_items(path) == [JudgeItem("0", "q1", "a1"), JudgeItem("x", "q2", "a2", reference="r2")]


def test_load_pairs_from_two_files_matched_by_id(tmp_path: Path) -> None:
    def record(i: int, question: str, answer: str) -> dict:
        return {"id": i, "question": question, "answer": answer}

    a = _write_jsonl(tmp_path / "model_a.jsonl", [record(1, "q1", "a1"), record(2, "q2", "a2")])
    b = _write_jsonl(tmp_path / "model_b.jsonl", [record(2, "q2", "b2"), record(1, "q1", "b1")])  # other order
    assert load_pairwise_items(a, b) == [JudgeItem("1", "q1", "a1", "b1"), JudgeItem("2", "q2", "a2", "b2")]
    wrong = _write_jsonl(tmp_path / "wrong.jsonl", [record(1, "other", "b1"), record(2, "q2", "b2")])
    with pytest.raises(PuyuError, match="question differs"):
        load_pairwise_items(a, wrong)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"question": "q"}\n', r"bad\.jsonl:1: no answer field"),
        ('{"question": "q", "answer": "a"}\nnot json\n', r"bad\.jsonl:2: not valid JSON"),
        ("[1, 2]\n", "expected a JSON object"),
        ("\n\n", "no records"),
        ('{"id": 1, "question": "q", "answer": "a"}\n{"id": 1, "question": "q", "answer": "b"}\n', "duplicate id"),
    ],
)
def test_bad_input_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PuyuError, match=message):
        load_single_items(path)


# ---------------------------------------------------------------------------------------------- summaries


def test_summaries_hand_computed() -> None:
    single = summarize_single([{"score": 8.0}, {"score": 5.5}, {"score": None}, {"score": 2.0}])
    assert single == {
        "count": 4,
        "rated": 3,
        "errors": 1,
        "mean_score": pytest.approx(5.1666666),
        "histogram": {"2": 1, "5": 1, "8": 1},
    }
    records = [
        {"winner": "a", "consistent": True},
        {"winner": "a", "consistent": True},
        {"winner": "b", "consistent": True},
        {"winner": "tie", "consistent": False},
        {"winner": "tie", "consistent": True},
        {"winner": "error", "consistent": False},
    ]
    pair = summarize_pairwise(records)
    assert (pair["count"], pair["wins"], pair["ties"], pair["losses"], pair["errors"]) == (6, 2, 2, 1, 1)
    assert pair["win_rate"] == pytest.approx(2 / 5)
    assert pair["tie_rate"] == pytest.approx(2 / 5)
    assert pair["loss_rate"] == pytest.approx(1 / 5)
    assert pair["consistency"] == pytest.approx(4 / 5)
    assert summarize_single([])["mean_score"] is None and summarize_pairwise([])["win_rate"] is None


# ---------------------------------------------------------------------------------------------- runs


def _answer_in(text: str, speaker: str) -> str:
    """The answer of `speaker` ("Assistant", "Assistant A", "Assistant B") in a judge prompt."""
    return re.search(rf"\[The Start of {speaker}'s Answer\]\n(.*?)\n\[The End", text, re.S).group(1)


def length_judge(prompt: str) -> str:
    """Rates an answer by its length (one point per word, at most 10) and prefers the longer answer."""
    if "[User Question]" in prompt:
        a, b = _answer_in(prompt, "Assistant A"), _answer_in(prompt, "Assistant B")
        verdict = "C" if len(a) == len(b) else ("A" if len(a) > len(b) else "B")
        return f"Comparing both. [[{verdict}]]"
    return f"Reasonable. Rating: [[{min(10, len(_answer_in(prompt, 'Assistant').split()))}]]"


def test_single_run_writes_judgments_and_summary(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "answers.jsonl",
        [
            {"id": "q1", "question": "Name a colour.", "answer": "red"},
            {"id": "q2", "question": "Describe rain.", "answer": "water falling from the clouds"},
            {"id": "q3", "question": "Say nothing.", "answer": ""},
        ],
    )
    judge = ScriptedModel(lambda p: "no rating here" if "Say nothing" in p else length_judge(p), name="len-judge")
    report = run_judge(judge, path, mode="single", out_dir=tmp_path / "out", progress=False)
    assert [r["score"] for r in report.records] == [1.0, 5.0, None]
    assert report.summary["mean_score"] == pytest.approx(3.0) and report.summary["errors"] == 1
    assert all(c[0]["role"] == "system" for c in judge.conversations)

    lines = (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["q1", "q2", "q3"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["judge"] == "len-judge" and summary["mean_score"] == pytest.approx(3.0)
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert "| 3 | 2 | 1 | 3.00 |" in markdown and "| q3 | n/a | Say nothing. |" in markdown


def _pairs(tmp_path: Path) -> Path:
    return _write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"question": "q1", "answer_a": "a long detailed answer", "answer_b": "short"},
            {"question": "q2", "answer_a": "tiny", "answer_b": "a much longer answer"},
            {"question": "q3", "answer_a": "same", "answer_b": "size"},
            {"question": "q4", "answer_a": "a fairly long answer", "answer_b": "brief"},
        ],
    )


def test_pairwise_run_with_a_consistent_judge(tmp_path: Path) -> None:
    judge = ScriptedModel(length_judge)
    report = run_judge(judge, _pairs(tmp_path), mode="pairwise", out_dir=tmp_path / "out", progress=False)
    assert [r["winner"] for r in report.records] == ["a", "b", "tie", "a"]
    assert len(judge.conversations) == 8  # each pair judged in both orders
    first, swapped = judge.conversations[0][1]["content"], judge.conversations[1][1]["content"]
    assert _answer_in(first, "Assistant A") == _answer_in(swapped, "Assistant B") == "a long detailed answer"
    s = report.summary
    assert (s["wins"], s["ties"], s["losses"], s["errors"]) == (2, 1, 1, 0)
    assert s["win_rate"] == 0.5 and s["consistency"] == 1.0
    assert "| pairs: 4 | 2 | 1 | 1 | 0 | 50.0% | 25.0% | 25.0% | 100.0% |" in report.files["summary_md"].read_text()


def test_position_biased_judge_gives_ties(tmp_path: Path) -> None:
    judge = ScriptedModel(lambda prompt: "The first one is better. [[A]]")
    report = run_judge(judge, _pairs(tmp_path), mode="pairwise", out_dir=tmp_path / "out", progress=False)
    assert [r["winner"] for r in report.records] == ["tie"] * 4
    assert report.summary["tie_rate"] == 1.0 and report.summary["consistency"] == 0.0


def test_pairwise_from_two_files_names_the_sides(tmp_path: Path) -> None:
    a = _write_jsonl(tmp_path / "big.jsonl", [{"question": "q", "answer": "a long answer here"}])
    b = _write_jsonl(tmp_path / "small.jsonl", [{"question": "q", "answer": "short"}])
    judge = ScriptedModel(length_judge)
    report = run_judge(judge, a, mode="pairwise", against=b, out_dir=tmp_path / "o", progress=False)
    assert report.summary["names"] == ["big", "small"] and report.records[0]["winner"] == "a"
    markdown = report.files["summary_md"].read_text()
    assert "| big vs small |" in markdown and "| 0 | big | big | big | q |" in markdown
    with pytest.raises(PuyuError, match="pairwise"):
        run_judge(ScriptedModel(length_judge), a, mode="single", against=b, out_dir=tmp_path / "o")


def test_resume_judges_only_what_is_missing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    calls = {"n": 0}

    def flaky(prompt: str) -> str:
        calls["n"] += 1
        if calls["n"] > 4:  # two pairs per batch → dies in the second batch
            raise RuntimeError("connection lost")
        return length_judge(prompt)

    with pytest.raises(RuntimeError):
        run_judge(ScriptedModel(flaky), _pairs(tmp_path), mode="pairwise", out_dir=out, batch_size=2, progress=False)
    assert len((out / "judgments.jsonl").read_text().splitlines()) == 2

    resumed = ScriptedModel(length_judge)
    report = run_judge(resumed, _pairs(tmp_path), mode="pairwise", out_dir=out, batch_size=2, progress=False)
    assert len(resumed.conversations) == 4  # only the last two pairs, both orders
    assert [r["winner"] for r in report.records] == ["a", "b", "tie", "a"]

    again = ScriptedModel(length_judge)
    run_judge(again, _pairs(tmp_path), mode="pairwise", out_dir=out, progress=False)
    assert again.conversations == []
    other_judge = ScriptedModel(length_judge, name="another-judge")
    run_judge(other_judge, _pairs(tmp_path), mode="pairwise", out_dir=out, progress=False)
    assert len(other_judge.conversations) == 8  # a different judge's verdicts are not reused


def test_bad_mode_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PuyuError, match="single' or 'pairwise"):
        judge_items(ScriptedModel(length_judge), [], mode="ranking", out_dir=tmp_path)


def test_judge_through_puyu_serve(tmp_path: Path) -> None:
    from puyu.eval.models import OpenAIModel

    pairs = _pairs(tmp_path)
    with served(tiny_model_folder(tmp_path / "tiny", max_length=2048), name="judge") as url:
        judge = OpenAIModel(url)
        params = SamplingParams(max_tokens=8, temperature=0.0)
        answers = [{"question": "Name a colour.", "answer": "red"}, {"question": "2+2?", "answer": "4"}]
        single_input = _write_jsonl(tmp_path / "answers.jsonl", answers)
        single = run_judge(judge, single_input, mode="single", out_dir=tmp_path / "s", params=params, progress=False)
        pairwise = run_judge(judge, pairs, mode="pairwise", out_dir=tmp_path / "p", params=params, progress=False)
    # A random model's judgments are noise; what is checked is that they were parsed as the parsers say.
    assert single.judge == "judge" and len(single.records) == 2
    for record in single.records:
        assert isinstance(record["judgment"], str) and record["score"] == parse_rating(record["judgment"])
    assert single.summary["rated"] + single.summary["errors"] == 2
    for record in pairwise.records:
        verdicts = (parse_verdict(record["judgment_ab"]), parse_verdict(record["judgment_ba"]))
        assert record["winner"] == combine_verdicts(*verdicts)[0]
    assert pairwise.summary["count"] == 4


def test_judge_command_defaults_to_pairwise_with_two_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from puyu.commands import eval_extras

    judge = ScriptedModel(length_judge, name="len-judge")
    monkeypatch.setattr(eval_extras, "_load_model", lambda spec, args, chat: judge)
    a = _write_jsonl(tmp_path / "big.jsonl", [{"question": "q", "answer": "a long answer here"}])
    b = _write_jsonl(tmp_path / "small.jsonl", [{"question": "q", "answer": "short"}])
    parser = argparse.ArgumentParser(prog="puyu eval")
    eval_extras.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "judge",
            "--judge",
            "http://localhost:1/v1",
            "--input",
            str(a),
            "--against",
            str(b),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert args.handler(args) == 0
    assert "| big vs small |" in capsys.readouterr().out
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["mode"] == "pairwise" and summary["wins"] == 1
