"""The cached stage runner: keys, done markers, skipping, reruns and invalidation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from puyu.errors import PuyuError
from puyu.pipeline.stages import DONE_FILE, Pipeline, Stage, StageContext, read_summary


class Recorder:
    """Stages that write a file, count their runs, and can be told to fail once."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.fail: set[str] = set()

    def stage(self, name: str, inputs: tuple[str, ...] = (), config: dict[str, Any] | None = None) -> Stage:
        def run(ctx: StageContext) -> tuple[dict[str, Path], dict[str, Any]]:
            self.runs.append(name)
            upstream = "".join(ctx.input(d, "out").read_text() for d in inputs)
            (ctx.dir / "partial").write_text("started")
            if name in self.fail:
                self.fail.discard(name)
                raise RuntimeError(f"{name} interrupted")
            (ctx.dir / "out.txt").write_text(upstream + name)
            return {"out": ctx.dir / "out.txt"}, {"length": len(upstream) + len(name)}

        return Stage(name, run, inputs, config or {})

    def pipeline(self, root: Path, b_config: dict[str, Any] | None = None) -> Pipeline:
        stages = [self.stage("a"), self.stage("b", ("a",), b_config), self.stage("c", ("b",)), self.stage("d", ("a",))]
        return Pipeline(root, stages, echo=lambda line: None)


def test_second_run_skips_finished_stages(tmp_path: Path) -> None:
    recorder = Recorder()
    records = recorder.pipeline(tmp_path).run()
    assert recorder.runs == ["a", "b", "c", "d"]
    assert records["c"].output("out").read_text() == "abc"
    assert records["c"].figures == {"length": 3}
    marker = json.loads((Path(records["c"].dir) / DONE_FILE).read_text())
    assert marker["outputs"]["out"] == str(records["c"].output("out"))
    recorder.pipeline(tmp_path).run()
    assert recorder.runs == ["a", "b", "c", "d"]
    assert json.loads((tmp_path / "pipeline.json").read_text())["stages"].keys() == {"a", "b", "c", "d"}
    assert read_summary(tmp_path) == records
    assert read_summary(tmp_path / "elsewhere") == {}


def test_changed_config_reruns_that_stage_and_downstream_only(tmp_path: Path) -> None:
    recorder = Recorder()
    first = recorder.pipeline(tmp_path).run()
    recorder.runs.clear()
    second = recorder.pipeline(tmp_path, b_config={"lr": 1}).run()
    assert recorder.runs == ["b", "c"]
    assert second["a"].dir == first["a"].dir and second["d"].dir == first["d"].dir
    assert second["b"].dir != first["b"].dir and second["c"].dir != first["c"].dir


def test_from_stage_invalidates_it_and_downstream(tmp_path: Path) -> None:
    recorder = Recorder()
    pipeline = recorder.pipeline(tmp_path)
    pipeline.run()
    recorder.runs.clear()
    assert pipeline.downstream("b") == ["b", "c"]
    pipeline.run(from_stage="b")
    assert recorder.runs == ["b", "c"]
    recorder.runs.clear()
    pipeline.run(from_stage="a")
    assert recorder.runs == ["a", "b", "c", "d"]
    with pytest.raises(PuyuError, match="unknown stage"):
        pipeline.run(from_stage="z")


def test_interrupted_stage_reruns_in_the_same_folder(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.fail.add("b")
    pipeline = recorder.pipeline(tmp_path)
    with pytest.raises(RuntimeError, match="interrupted"):
        pipeline.run()
    folder = pipeline.stage_dir("b")
    assert (folder / "partial").is_file() and not (folder / DONE_FILE).exists()
    recorder.runs.clear()
    records = pipeline.run()
    assert recorder.runs == ["b", "c", "d"]
    assert Path(records["b"].dir) == folder


def test_until_stops_and_stage_order_is_checked(tmp_path: Path) -> None:
    recorder = Recorder()
    records = recorder.pipeline(tmp_path).run(until="b")
    assert list(records) == ["a", "b"] and recorder.runs == ["a", "b"]
    with pytest.raises(PuyuError, match="not an earlier stage"):
        Pipeline(tmp_path, [recorder.stage("b", ("a",)), recorder.stage("a")])
