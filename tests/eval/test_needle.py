"""Needle in a haystack: context construction, scoring, the grid run, its outputs and resume."""

from __future__ import annotations

import argparse
import csv
import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from needle_judge_support import (
    HAYSTACK,
    NEEDLE,
    QUESTION,
    Recording,
    ScriptedModel,
    served,
    tiny_model_folder,
    window_reader,
)

from puyu.errors import PuyuError
from puyu.eval.needle import (
    DEFAULT_PROMPT,
    CharMeter,
    NeedleReport,
    TokenizerMeter,
    build_context,
    fill_haystack,
    insert_needle,
    run_needle,
    score_answer,
    sentence_boundaries,
)
from puyu.tokenizer import byte_level_tokenizer

ANSWER = ["purple basil"]
_STARTS = sentence_boundaries(HAYSTACK)
LONGEST_SENTENCE = max(b - a for a, b in itertools.pairwise(_STARTS))


@pytest.fixture(scope="module")
def tokenizer_meter() -> TokenizerMeter:
    return TokenizerMeter(byte_level_tokenizer("internlm2"))


# ---------------------------------------------------------------------------------------------- context


@pytest.mark.parametrize("meter_kind", ["tokenizer", "chars"])
@pytest.mark.parametrize("length", [400, 900, 3000])
@pytest.mark.parametrize("depth", [0.0, 10.0, 50.0, 90.0, 100.0])
def test_context_has_the_target_length_and_the_needle_at_its_depth(
    tokenizer_meter: TokenizerMeter, meter_kind: str, length: int, depth: float
) -> None:
    meter = tokenizer_meter if meter_kind == "tokenizer" else CharMeter(3.0)
    source = fill_haystack(HAYSTACK, length, meter)
    built = build_context(source, length=length, depth=depth, needle=NEEDLE, question=QUESTION, meter=meter)

    # Length: counted independently with the tokenizer itself (or the character rule).
    if meter_kind == "tokenizer":
        measured = len(tokenizer_meter.tokenizer.encode(built.prompt, add_special_tokens=False))
    else:
        measured = -(-len(built.prompt) // 3)
    assert measured == built.tokens
    assert abs(measured - length) <= 2

    # The needle appears once, whole, inside the document part; the question comes after it.
    assert built.prompt.count(NEEDLE) == 1
    assert built.context[built.needle_start :].startswith(NEEDLE)
    assert built.prompt.endswith(DEFAULT_PROMPT.split("{question}")[1])
    assert built.prompt.index(NEEDLE) < built.prompt.rindex(f"Question: {QUESTION}")

    # Depth: the needle sits at a sentence start within one sentence before the requested point.
    filler = built.context.replace(NEEDLE, "", 1)
    target = depth / 100 * len(filler)
    slack = 4  # one token of rounding (3 characters for the character meter) and a joining space
    assert built.needle_start <= target + slack
    assert target - built.needle_start <= LONGEST_SENTENCE + slack
    before = built.context[: built.needle_start].rstrip(" ")
    assert before == "" or before[-1] in ".!?\n"
    assert abs(built.actual_depth - depth) <= 100 * (LONGEST_SENTENCE + slack) / len(filler)


def test_insert_needle_at_sentence_boundaries() -> None:
    meter = CharMeter(1.0)
    text = "One two. Three four! Five six? Seven eight."
    assert insert_needle(text, "NEEDLE.", 0, meter) == ("NEEDLE. " + text, 0)
    assert insert_needle(text, "NEEDLE.", 100, meter) == (text + " NEEDLE.", len(text) + 1)
    # 50% is character 21.5, inside "Five six?"; the needle goes before that sentence.
    context, start = insert_needle(text, "NEEDLE.", 50, meter)
    assert context == "One two. Three four! NEEDLE. Five six? Seven eight."
    assert start == context.index("NEEDLE.")


def test_fill_haystack_repeats_a_short_text(tokenizer_meter: TokenizerMeter) -> None:
    filled = fill_haystack("Tiny text.", 95, tokenizer_meter)
    assert tokenizer_meter.count(filled) == 95
    assert filled.startswith("Tiny text.\n\nTiny text.")
    with pytest.raises(PuyuError, match="empty"):
        fill_haystack("   ", 10, tokenizer_meter)


def test_context_too_short_for_the_question_is_an_error(tokenizer_meter: TokenizerMeter) -> None:
    with pytest.raises(PuyuError, match="too short"):
        build_context(HAYSTACK, length=50, depth=50, needle=NEEDLE, question=QUESTION, meter=tokenizer_meter)


# ---------------------------------------------------------------------------------------------- scoring


@pytest.mark.parametrize(
    ("response", "answer", "score"),
    [
        ("It is purple basil.", "purple basil", 1.0),
        ("PURPLE-basil!!", "purple basil", 1.0),
        ("Basil, I think.", "purple basil", 0.5),
        ("The soup.", "the purple basil", 0.0),  # stopwords earn nothing
        ("no idea", "purple basil", 0.0),
        ("eat a sandwich", ["sandwich", "Dolores Park"], 0.5),
        ("Sandwiches in dolores park", ["sandwich", "Dolores Park"], 0.5),  # whole words only
        ("A sandwich in Dolores Park.", ["sandwich", "Dolores Park"], 1.0),
        ("答案是紫色罗勒。", "紫色罗勒", 1.0),
        ("", ["x"], 0.0),
    ],
)
def test_score_answer(response: str, answer: str | list[str], score: float) -> None:
    assert score_answer(response, answer) == pytest.approx(score)


def test_score_answer_needs_keywords() -> None:
    with pytest.raises(PuyuError, match="no keywords"):
        score_answer("anything", ["", "  "])


# ---------------------------------------------------------------------------------------------- the run


def _png_pixels(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(path)[..., :3]


def _has_colour(pixels: np.ndarray, hex_colour: str) -> bool:
    rgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return bool((np.abs(pixels - rgb).max(axis=-1) < 0.02).any())


def _run(
    model: object, out: Path, lengths: list[int], depths: Sequence[float] = (0, 100), **options: object
) -> NeedleReport:
    """`run_needle` over HAYSTACK with the test needle, question and answer, one character a token, no progress bar;
    `options` add or replace arguments."""
    arguments = {
        "needle": NEEDLE,
        "question": QUESTION,
        "answer": ANSWER,
        "chars_per_token": 1.0,
        "progress": False,
        **options,
    }
    return run_needle(model, HAYSTACK, context_lengths=lengths, depths=depths, out_dir=out, **arguments)


def test_run_needle_scores_known_cells_and_writes_reports(tmp_path: Path) -> None:
    # The reader sees only the last 600 characters: with a 1-char-per-token meter a 400-token prompt is
    # read whole, while at 2000 tokens only a needle at depth 100 is close enough to the end.
    model = ScriptedModel(window_reader(600), name="window-600")
    report = _run(model, tmp_path, [2000, 400], [100, 0, 50])
    expected = {(400, 0.0): 1.0, (400, 50.0): 1.0, (400, 100.0): 1.0, (2000, 0.0): 0.0, (2000, 50.0): 0.0}
    expected[(2000, 100.0)] = 1.0
    assert {(c.length, c.depth): c.score for c in report.cells} == expected
    assert [(c.length, c.depth) for c in report.cells] == sorted(expected)  # ordered by length, then depth
    assert report.mean_score == pytest.approx(4 / 6)
    assert len(model.conversations) == 6 and all(len(c) == 1 for c in model.conversations)
    assert all(abs(c.prompt_tokens - c.length) <= 2 for c in report.cells)

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["model"] == "window-600" and results["mean_score"] == pytest.approx(4 / 6)
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert {(int(r["length"]), float(r["depth"])): float(r["score"]) for r in rows} == expected
    summary = (tmp_path / "summary.md").read_text()
    assert "| 0% | 1.00 | 0.00 |" in summary and "| **mean** | 1.00 | 0.33 |" in summary
    # Both ends of the colour scale are drawn: red cells (score 0) and green cells (score 1).
    pixels = _png_pixels(tmp_path / "heatmap.png")
    assert _has_colour(pixels, "#d7301f") and _has_colour(pixels, "#1a9850")


def test_lengths_beyond_the_model_are_skipped(tmp_path: Path) -> None:
    model = ScriptedModel(window_reader(10_000), max_length=1000)
    report = _run(model, tmp_path, [100, 400, 5000], [50])
    too_short, ok, too_long = report.cells
    assert ok.status == "ok" and ok.score == 1.0
    assert too_long.status == "skipped" and too_long.score is None and "max_length 1000" in too_long.reason
    assert too_short.status == "skipped" and "shorter than the prompt without filler" in too_short.reason
    assert len(model.conversations) == 1
    assert "Skipped 2 cells (100 tokens: shorter" in (tmp_path / "summary.md").read_text()
    pixels = _png_pixels(tmp_path / "heatmap.png")
    assert _has_colour(pixels, "#d9d9d9")  # the skipped cell is grey


def test_completion_mode_uses_generate(tmp_path: Path) -> None:
    model = ScriptedModel(window_reader(10_000))
    _run(model, tmp_path, [400], [0, 100], chat=False)
    assert model.conversations == [] and len(model.prompts) == 2
    assert all(p.endswith("Answer:") for p in model.prompts)


def test_resume_reuses_cached_cells(tmp_path: Path) -> None:
    first = ScriptedModel(window_reader(600))
    _run(first, tmp_path, [400, 800])
    assert len(first.prompts) == 4

    again = ScriptedModel(window_reader(600))
    report = _run(again, tmp_path, [400, 800])
    assert again.prompts == []
    assert [c.score for c in report.cells] == [1.0, 1.0, 0.0, 1.0]

    wider = ScriptedModel(window_reader(600))
    _run(wider, tmp_path, [400, 800, 1200])
    assert len(wider.prompts) == 2  # only the new length's cells

    changed = ScriptedModel(window_reader(600))
    _run(changed, tmp_path, [400], needle=NEEDLE.replace("purple", "green"))
    assert len(changed.prompts) == 2  # different settings: nothing reused


def test_interrupted_run_resumes_after_the_last_finished_length(tmp_path: Path) -> None:
    def fail_on_long(prompt: str) -> str:
        if len(prompt) > 600:
            raise RuntimeError("connection lost")
        return "purple basil"

    with pytest.raises(RuntimeError):
        _run(ScriptedModel(fail_on_long), tmp_path, [400, 800])
    resumed = ScriptedModel(window_reader(600))
    report = _run(resumed, tmp_path, [400, 800])
    assert len(resumed.prompts) == 2 and all(len(p) > 600 for p in resumed.prompts)
    assert [c.score for c in report.cells] == [1.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depths": [120]}, "depths are percentages"),
        ({"context_lengths": []}, "at least one"),
        ({"context_lengths": [0]}, "positive"),
    ],
)
def test_bad_grids_are_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    arguments = {"context_lengths": [400], "depths": [50], "out_dir": tmp_path, "progress": False, **kwargs}
    with pytest.raises(PuyuError, match=message):
        run_needle(ScriptedModel(window_reader(10)), HAYSTACK, **arguments)


def test_template_needs_both_fields(tmp_path: Path) -> None:
    with pytest.raises(PuyuError, match="template"):
        run_needle(
            ScriptedModel(window_reader(10)),
            HAYSTACK,
            context_lengths=[400],
            depths=[50],
            out_dir=tmp_path,
            template="{context} only",
            progress=False,
        )


# ---------------------------------------------------------------------------------------------- real models


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("needle") / "tiny", max_length=1024)


def test_local_model_counts_its_own_template_tokens(tmp_path: Path, tiny_folder: Path) -> None:
    from puyu.eval.models import LocalModel

    model = Recording(LocalModel(tiny_folder, device="cpu", chat=True))
    report = _run(model, tmp_path, [300, 1200], [0, 100], max_tokens=4, chars_per_token=None)
    assert [c.status for c in report.cells] == ["ok", "ok", "skipped", "skipped"]  # 1200 > max_length 1024
    assert len(model.conversations) == 2
    for conversation in model.conversations:
        # What the model really reads: the rendered chat, tokenized as LocalModel.chat does.
        ids = model.tokenizer.encode(model.render_chat(conversation), add_special_tokens=False)
        assert abs(len(ids) - 300) <= 2
    assert all(0.0 <= c.score <= 1.0 for c in report.cells[:2])
    assert (tmp_path / "heatmap.png").stat().st_size > 0


def test_needle_through_puyu_serve(tmp_path: Path, tiny_folder: Path) -> None:
    from puyu.eval.models import OpenAIModel

    with served(tiny_folder) as url:
        model = OpenAIModel(url)
        # chars_per_token 1 (the default of _run): the tiny model's byte-level tokenizer reads one token per character
        report = _run(model, tmp_path, [300, 1200], [50], max_tokens=4)
    assert model.max_length == 1024
    ok, skipped = report.cells
    assert ok.status == "ok" and isinstance(ok.response, str) and abs(ok.prompt_tokens - 300) <= 2
    assert skipped.status == "skipped"


# ---------------------------------------------------------------------------------------------- command line


def _eval_parser() -> argparse.ArgumentParser:
    from puyu.commands import eval_extras

    parser = argparse.ArgumentParser(prog="puyu eval")
    eval_extras.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_needle_command_with_a_scripted_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from puyu.commands import eval_extras

    model = ScriptedModel(window_reader(600))
    monkeypatch.setattr(eval_extras, "_load_model", lambda spec, args, chat: model)
    haystack = tmp_path / "haystack.txt"
    haystack.write_text(HAYSTACK, encoding="utf-8")
    args = _eval_parser().parse_args(
        ["needle", "--api", "http://localhost:1/v1", "--haystack", str(haystack), "--lengths", "400,2000",
         "--depths", "0,100", "--needle", NEEDLE, "--question", QUESTION, "--answer", "purple basil",
         "--out", str(tmp_path / "out"), "--chars-per-token", "1", "--no-chat"]
    )  # fmt: skip
    assert args.handler(args) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    scores = {(c["length"], c["depth"]): c["score"] for c in results["cells"]}
    assert scores == {(400, 0.0): 1.0, (400, 100.0): 1.0, (2000, 0.0): 0.0, (2000, 100.0): 1.0}
    assert model.conversations == [] and len(model.prompts) == 4  # --no-chat


def test_needle_command_on_a_model_folder(tmp_path: Path, tiny_folder: Path, capsys: pytest.CaptureFixture) -> None:
    haystack = tmp_path / "haystack.txt"
    haystack.write_text(HAYSTACK, encoding="utf-8")
    args = _eval_parser().parse_args(
        ["needle", "--model", str(tiny_folder), "--haystack", str(haystack), "--lengths", "300", "--depths", "50",
         "--max-tokens", "2", "--device", "cpu", "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert args.handler(args) == 0
    cell = json.loads((tmp_path / "out" / "results.json").read_text())["cells"][0]
    assert cell["status"] == "ok" and abs(cell["prompt_tokens"] - 300) <= 2
    assert "mean needle score" in capsys.readouterr().out


def test_needle_command_errors(tmp_path: Path) -> None:
    parser = _eval_parser()
    args = parser.parse_args(["needle", "--model", "m", "--haystack", str(tmp_path / "missing.txt"), "--out", "o"])
    with pytest.raises(PuyuError, match="no such file"):
        args.handler(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["needle", "--model", "m", "--haystack", "h", "--out", "o", "--lengths", "1,x"])


def test_template_may_hold_other_braces(tmp_path: Path) -> None:
    model = ScriptedModel(window_reader(10_000))
    template = 'JSON document: {"text": "{context}"}\nQ: {question}\nA:'
    _run(model, tmp_path, [400], [50], template=template, chat=False)
    (prompt,) = model.prompts
    assert prompt.startswith('JSON document: {"text": "The river') and prompt.endswith(f'"}}\nQ: {QUESTION}\nA:')
    assert abs(len(prompt) - 400) <= 2
