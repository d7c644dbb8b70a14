"""The report's goal table: each goal computed from the stage figures, met or not."""

from __future__ import annotations

from puyu.pipeline.report import goal_rows
from puyu.pipeline.stages import StageRecord


def _records(sft_qa: float, int8_qa: float, calls: float, seconds: float, sums: float = 70.0) -> dict[str, StageRecord]:
    scores = {
        "base": {"world_facts_qa": 2.0, "world_sums": 4.0, "world_facts_mc": 60.0},
        "sft": {"world_facts_qa": sft_qa, "world_sums": sums, "world_facts_mc": 10.0},
        "sft-int8": {"world_facts_qa": int8_qa, "world_sums": sums},
    }
    tool = {"sft": {"requests": 60, "correct_calls": round(calls * 0.6), "call_accuracy": calls}}
    return {
        "pretrain": StageRecord("pretrain", "k", "d", seconds=seconds, peak_rss_mb=1200.0),
        "eval": StageRecord("eval", "k", "d", figures={"scores": scores, "tool_calls": tool}, seconds=10.0),
    }


def test_goals_use_the_mean_of_the_instruction_tasks() -> None:
    rows = {
        goal.split(" ")[0] + goal.split(" ")[1]: (measured, met)
        for goal, measured, met in goal_rows(_records(sft_qa=40.0, int8_qa=37.0, calls=85.0, seconds=500.0))
    }
    # SFT mean (40 + 70) / 2 = 55 against base (2 + 4) / 2 = 3; the multiple-choice task does not count.
    assert rows["SFT−"] == ("55.0 − 3.0 = +52.0", True)
    assert rows["int8within"] == ("1.5 points", True)
    assert rows["correctcalculator"] == ("85.0% (51/60)", True)
    assert rows["wholerun"] == ("8.5 min", True)
    assert rows["peakmemory"] == ("1.17 GB", True)


def test_goals_report_misses() -> None:
    met = {
        goal: ok for goal, _, ok in goal_rows(_records(sft_qa=0.0, int8_qa=10.0, calls=43.3, seconds=1000.0, sums=20.0))
    }
    assert [ok for goal, ok in met.items() if not goal.startswith("peak")] == [False] * 4


def test_report_names_models_next_commands_and_explains_misses(tmp_path) -> None:
    from puyu.pipeline.report import write_report

    for name in ("base-model", "model", "int8-model"):
        (tmp_path / name).mkdir()
    records = _records(sft_qa=0.0, int8_qa=10.0, calls=43.3, seconds=1000.0, sums=20.0)
    records["pretrain"].figures = {"steps": 12, "settings": {"lr": 0.001}}
    records["pretrain"].outputs = {"run": str(tmp_path / "no-run")}
    report = write_report(tmp_path, records, tmp_path / "charts").read_text()
    assert f"| `{tmp_path / 'int8-model'}` | SFT, int8 |" in report
    assert f".venv/bin/puyu chat {tmp_path / 'model'} --temperature 0" in report
    assert "- missed *whole run ≤ 15 min*:" in report and "- missed *SFT − base" in report
    assert "| steps | 12 |" in report and "lr" not in report  # nested settings stay out of the tables

    tiny = write_report(tmp_path, records, tmp_path / "charts", size="tiny").read_text()
    assert "| no (not expected at --size tiny) |" in tiny and "- missed *SFT − base" not in tiny
