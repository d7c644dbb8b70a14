from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from puyu.cli import main
from puyu.client.local import LocalModel
from puyu.eval.api import load_run_config, run_evaluation
from puyu.eval.cache import PredictionCache
from puyu.eval.evaluators import evaluate_task
from puyu.eval.tasks import load_task
from puyu.generation.sampling import SamplingParams


class CountingModel:
    """An EvalModel that prefers option B and answers every question with '#### 7'; counts what it is asked."""

    name = "counting"
    max_length = 10_000

    def __init__(self, fail_after: int | None = None) -> None:
        self.requests = 0
        self.fail_after = fail_after

    def _count(self, n: int) -> None:
        if self.fail_after is not None and self.requests >= self.fail_after:
            raise KeyboardInterrupt  # the run is interrupted here
        self.requests += n

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        self._count(len(requests))
        return [(-1.0 if cont.strip() == "B" else -2.0, False) for _, cont in requests]

    def generate(self, prompts: list[str], params: SamplingParams) -> list[str]:
        self._count(len(prompts))
        return ["so the answer is 3 + 4.\n#### 7" for _ in prompts]

    def chat(self, conversations: list[list[dict]], params: SamplingParams) -> list[str]:
        return self.generate([""] * len(conversations), params)

    def perplexity(self, texts: list[str]) -> list[tuple[float, int]]:
        self._count(len(texts))
        return [(float(len(t)), len(t)) for t in texts]


def test_interrupted_run_resumes_from_the_cache(tmp_path: Path, bench_data: Path) -> None:
    task = load_task("mmlu", data_dir=bench_data, shots=1)  # 6 questions × 4 options
    cache = PredictionCache(tmp_path / "cache.sqlite")
    with pytest.raises(KeyboardInterrupt):
        evaluate_task(CountingModel(fail_after=8), task, cache, chunk_size=2, progress=False)
    assert len(cache) == 2  # the first chunk (2 questions) was committed before the interruption
    again = CountingModel()
    result = evaluate_task(again, task, cache, chunk_size=2, progress=False)
    assert again.requests == 4 * 4  # only the 4 questions not in the cache were asked
    assert result.score == pytest.approx(100 * 2 / 6)  # gold B in 2 of 6 questions
    third = CountingModel()
    assert evaluate_task(third, task, cache, progress=False).score == result.score
    assert third.requests == 0
    cache.close()


def test_generation_metrics_through_the_evaluator(bench_data: Path) -> None:
    result = evaluate_task(CountingModel(), load_task("gsm8k", data_dir=bench_data, shots=0), progress=False)
    assert [r["extracted"] for r in result.records] == ["7", "7", "7"]
    assert [r["correct"] for r in result.records] == [True, False, False]
    assert result.score == pytest.approx(100 / 3) and result.metric == "numeric_match"


def test_run_evaluation_report_files_and_resume(
    tmp_path: Path, tiny_model: Path, bench_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    calls: list[int] = []
    original = LocalModel.loglikelihood

    def counted(self: LocalModel, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        calls.append(len(requests))
        return original(self, requests)

    monkeypatch.setattr(LocalModel, "loglikelihood", counted)
    tasks = ["mmlu", "cmmlu", "hellaswag", "ceval_nosuch"]
    report = run_evaluation(
        [str(tiny_model), {"path": str(tiny_model), "name": "second"}],
        tasks,
        data_dir=str(bench_data),
        out_dir=str(out),
        shots=1,
        progress=False,
    )
    assert set(report.scores) == {"tiny", "second"}
    assert set(report.scores["tiny"]) == {"mmlu", "cmmlu", "hellaswag"}
    assert report.scores["tiny"] == report.scores["second"]  # the same weights give the same scores
    assert "ceval_nosuch" in report.failures and "C-Eval layout" in report.failures["ceval_nosuch"]
    assert sum(calls) == 6 * 4 + 2 * 4 + 1 * 4  # the second entry is the same folder: served from the cache
    mmlu = next(r for r in report.results if r.task == "mmlu")
    astronomy = [r["correct"] for r in mmlu.records if r["subject"] == "astronomy"]
    assert mmlu.metrics["acc_stem"] == pytest.approx(100 * sum(astronomy) / 3)  # MMLU's category of astronomy
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["scores"] == report.scores
    assert summary["dimensions"]["tiny"]["examination"] == pytest.approx(
        (report.scores["tiny"]["mmlu"] + report.scores["tiny"]["cmmlu"]) / 2
    )
    markdown = (out / "summary.md").read_text(encoding="utf-8")
    assert "| dimension | task | metric | n | tiny | second |" in markdown
    assert "## mmlu by subject" in markdown and "| astronomy | 3 |" in markdown
    assert "ceval_nosuch" in markdown
    rows = list(csv.DictReader((out / "summary.csv").open(encoding="utf-8")))
    assert {(r["model"], r["task"], r["subject"]) for r in rows} >= {
        ("tiny", "mmlu", ""),
        ("tiny", "mmlu", "astronomy"),
    }
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    predictions = (out / "tiny" / "mmlu" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(predictions) == 6 and {"id", "logprobs", "pred", "correct", "prompt"} <= set(json.loads(predictions[0]))
    calls.clear()
    again = run_evaluation(
        [str(tiny_model)], tasks[:3], data_dir=str(bench_data), out_dir=str(out), shots=1, progress=False
    )
    assert calls == [] and again.scores["tiny"] == report.scores["tiny"]  # all from the cache


def test_cli_and_run_file(tmp_path: Path, tiny_model: Path, bench_data: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli"
    code = main(
        [
            "eval",
            "--model",
            str(tiny_model),
            "--tasks",
            "arc_easy,mmlu_astronomy",
            "--data-dir",
            str(bench_data),
            "--limit",
            "1",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| knowledge | arc_easy |" in printed and str(out / "summary.md") in printed
    assert json.loads((out / "tiny" / "mmlu_astronomy" / "result.json").read_text())["n"] == 1
    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        f"models: [{tiny_model}]\ntasks: [mmlu_astronomy]\ndata_dir: {bench_data}\nout: runs/x\nlimit: 2\nchat: off\n",
        encoding="utf-8",
    )
    options = load_run_config(run_file)
    assert options["out_dir"] == str(tmp_path / "runs" / "x") and options["chat"] is False
    assert main(["eval", "--config", str(run_file), "--quiet"]) == 0
    assert json.loads((tmp_path / "runs" / "x" / "summary.json").read_text())["results"][0]["n"] == 2
    assert main(["eval", "--model", str(tiny_model), "--tasks", "nonsense", "--out", str(out)]) == 2
    assert "unknown task" in capsys.readouterr().err


def test_worker_processes_fill_the_cache(
    tmp_path: Path, tiny_model: Path, bench_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    single = run_evaluation(
        [str(tiny_model)], ["mmlu"], data_dir=str(bench_data), out_dir=str(tmp_path / "one"), shots=1, progress=False
    )
    calls: list[int] = []
    original = LocalModel.loglikelihood

    def counted(self: LocalModel, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        calls.append(len(requests))
        return original(self, requests)

    monkeypatch.setattr(LocalModel, "loglikelihood", counted)  # this process only: workers are spawned fresh
    report = run_evaluation(
        [str(tiny_model)],
        ["mmlu"],
        data_dir=str(bench_data),
        out_dir=str(tmp_path / "two"),
        shots=1,
        workers=2,
        progress=False,
    )
    assert report.scores == single.scores
    assert calls == []  # every sample was scored by the two workers
    cache = PredictionCache(tmp_path / "two" / "cache.sqlite")
    assert len(cache) == 6
    cache.close()


def test_rewritten_weights_are_not_served_from_the_cache(tmp_path: Path, tiny_model: Path, bench_data: Path) -> None:
    import os
    import shutil

    folder = Path(shutil.copytree(tiny_model, tmp_path / "model"))
    task = load_task("mmlu_astronomy", data_dir=bench_data, shots=0)
    cache = PredictionCache(tmp_path / "cache.sqlite")
    first = LocalModel(folder)
    evaluate_task(first, task, cache, progress=False)
    same = LocalModel(folder)
    evaluate_task(same, task, cache, progress=False)
    assert first.calls > 0 and same.calls == 0
    weights = next(folder.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # "retrained"
    changed = LocalModel(folder)
    evaluate_task(changed, task, cache, progress=False)
    assert changed.calls == first.calls
    cache.close()
