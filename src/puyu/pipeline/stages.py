"""A small pipeline of cached stages.

A stage declares the stages it reads from and its settings; its output folder is keyed by a hash of
those (and of its upstream stages' keys), so changing a setting gives the stage and everything
downstream new folders while untouched stages stay cached. A finished stage writes `stage.json`
(atomically, last) with its outputs, figures and timing; a stage without it runs again in the same
folder, so the tools that resume (training from checkpoints, data preparation per unit) pick up where
an interrupted run stopped.
"""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from puyu.errors import PuyuError
from puyu.io import atomic_write_text

DONE_FILE = "stage.json"
STAGES_DIR = "stages"
SUMMARY_FILE = "pipeline.json"


@dataclass
class StageRecord:
    """What a finished stage left: its folder, named outputs (paths), figures for the report, and timing."""

    name: str
    key: str
    dir: str
    outputs: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    finished: str = ""

    def output(self, name: str) -> Path:
        try:
            return Path(self.outputs[name])
        except KeyError:
            raise PuyuError(f"stage {self.name!r} has no output {name!r} (it has {', '.join(self.outputs)})") from None


@dataclass
class StageContext:
    """What a running stage gets: its folder and the records of the stages it reads from."""

    dir: Path
    upstream: dict[str, StageRecord]

    def input(self, stage: str, output: str) -> Path:
        return self.upstream[stage].output(output)


@dataclass
class Stage:
    """One step of the pipeline.

    Args:
        name: short name (also the CLI's `--from` value).
        run: does the work in `ctx.dir`; returns (outputs by name, figures). Output paths are absolute.
        inputs: names of earlier stages whose outputs it reads.
        config: JSON-serialisable settings; part of the cache key.
        description: one line for progress output and the report.
    """

    name: str
    run: Callable[[StageContext], tuple[dict[str, Path], dict[str, Any]]]
    inputs: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    description: str = ""


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 1024)


class Pipeline:
    """Stages run in the order given, each cached under `root/stages/NAME-KEY`.

    Args:
        root: the pipeline's folder.
        stages: the stages, upstream before downstream.
        version: mixed into every key; bump it when stage code changes what it writes.
        echo: where progress lines go.
    """

    def __init__(
        self, root: str | Path, stages: Sequence[Stage], *, version: str = "1", echo: Callable[[str], None] = print
    ) -> None:
        self.root = Path(root)
        self.stages = list(stages)
        self.version = version
        self.echo = echo
        names = [s.name for s in self.stages]
        for i, stage in enumerate(self.stages):
            if stage.name in names[:i]:
                raise PuyuError(f"stage {stage.name!r} is defined twice")
            for dep in stage.inputs:
                if dep not in names[:i]:
                    raise PuyuError(f"stage {stage.name!r} reads {dep!r}, which is not an earlier stage")
        self._keys: dict[str, str] = {}
        for stage in self.stages:
            blob = {
                "name": stage.name,
                "version": version,
                "config": stage.config,
                "inputs": {d: self._keys[d] for d in stage.inputs},
            }
            text = json.dumps(blob, sort_keys=True, default=str)
            self._keys[stage.name] = hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def key(self, name: str) -> str:
        return self._keys[name]

    def stage_dir(self, name: str) -> Path:
        return self.root / STAGES_DIR / f"{name}-{self.key(name)}"

    def record(self, name: str) -> StageRecord | None:
        """The finished record of `name`'s current folder, or None when it has not finished."""
        path = self.stage_dir(name) / DONE_FILE
        if not path.is_file():
            return None
        return StageRecord(**json.loads(path.read_text(encoding="utf-8")))

    def downstream(self, name: str) -> list[str]:
        """`name` and every stage reading from it, directly or not, in pipeline order."""
        if name not in self.names:
            raise PuyuError(f"unknown stage {name!r} (stages: {', '.join(self.names)})")
        hit = {name}
        for stage in self.stages:
            if hit.intersection(stage.inputs):
                hit.add(stage.name)
        return [n for n in self.names if n in hit]

    def invalidate(self, name: str) -> list[str]:
        """Delete the current folders of `name` and everything downstream, so they run afresh."""
        names = self.downstream(name)
        for n in names:
            shutil.rmtree(self.stage_dir(n), ignore_errors=True)
        return names

    def run(self, *, from_stage: str | None = None, until: str | None = None) -> dict[str, StageRecord]:
        """Run every stage that has not finished (after invalidating `from_stage` onwards).

        Args:
            from_stage: rerun this stage and everything downstream even if cached.
            until: stop after this stage.

        Returns:
            The record of every stage that ran or was cached, by name.
        """
        if until is not None and until not in self.names:
            raise PuyuError(f"unknown stage {until!r} (stages: {', '.join(self.names)})")
        if from_stage is not None:
            self.invalidate(from_stage)
        records: dict[str, StageRecord] = {}
        total = len(self.stages)
        for number, stage in enumerate(self.stages, 1):
            label = f"[{number}/{total}] {stage.name}"
            record = self.record(stage.name)
            if record is not None:
                self.echo(f"{label}: cached ({record.dir})")
            else:
                self.echo(f"{label}: {stage.description or 'running'} ...")
                record = self._run_stage(stage, records)
                self.echo(f"{label}: done in {record.seconds:.1f} s")
            records[stage.name] = record
            if stage.name == until:
                break
        self._write_summary(records)
        return records

    def _run_stage(self, stage: Stage, records: dict[str, StageRecord]) -> StageRecord:
        folder = self.stage_dir(stage.name)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "config.json", json.dumps(stage.config, indent=2, default=str) + "\n")
        start = time.perf_counter()
        outputs, figures = stage.run(StageContext(folder, {d: records[d] for d in stage.inputs}))
        record = StageRecord(
            name=stage.name,
            key=self.key(stage.name),
            dir=str(folder),
            outputs={k: str(v) for k, v in outputs.items()},
            figures=figures,
            seconds=round(time.perf_counter() - start, 2),
            peak_rss_mb=round(_peak_rss_mb(), 1),
            finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        atomic_write_text(folder / DONE_FILE, json.dumps(asdict(record), indent=2, ensure_ascii=False) + "\n")
        return record

    def _write_summary(self, records: dict[str, StageRecord]) -> None:
        summary = {"stages": {name: asdict(r) for name, r in records.items()}}
        atomic_write_text(self.root / SUMMARY_FILE, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")


def read_summary(root: str | Path) -> dict[str, StageRecord]:
    """The records of the stages a pipeline in `root` last ran, from its summary (empty when it has none)."""
    summary = Path(root) / SUMMARY_FILE
    if not summary.is_file():
        return {}
    return {name: StageRecord(**record) for name, record in json.loads(summary.read_text())["stages"].items()}
