"""`puyu data prepare`: raw documents → cleaned, filtered, deduplicated JSONL (and token shards).

Three passes over work units (groups of input files of about `unit_bytes`):

1. per unit, in worker processes: read → clean → quality filters → PII scrubbing → write the kept
   documents to `work/unit-NNNNN.jsonl`, with each document's exact-dedup key and MinHash signature
   beside it; the unit's tally is written last and marks it finished;
2. once, over all units in order: exact and near-duplicate detection (the first occurrence is kept);
3. per unit, in worker processes: write the surviving documents to `documents/part-NNNNN.jsonl`.

Every file is written atomically, so an interrupted run resumes: finished units and parts are
skipped, and the global pass is deterministic. A run with different settings or inputs into the same
output folder is refused instead of mixing results. The report (`report.md`, `report.json`,
`length_histogram.png`) says what each step removed and why.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from puyu.configuration import to_dict
from puyu.data.cleaning import CleanConfig, Cleaner
from puyu.data.dedup import (
    ConcatenatedRows,
    DedupConfig,
    MinHasher,
    band_keys,
    exact_keys,
    find_exact_duplicates,
    near_duplicate_roots,
)
from puyu.data.document import Tally
from puyu.data.filters import FiltersConfig, build_filters, first_rejection
from puyu.data.pii import PiiConfig, PiiScrubber
from puyu.data.readers import expand_inputs, read_documents
from puyu.errors import PuyuError
from puyu.io import atomic_path, atomic_write_text

# Document lengths (characters) are histogrammed on fixed log-spaced bins so per-unit counts add up.
LENGTH_BINS = np.unique(np.round(np.logspace(0, 7, 57)).astype(np.int64))
SIGNATURE_BATCH = 512


@dataclass
class PrepareTokenizeConfig:
    """Pack the prepared documents into token shards at the end of the run."""

    tokenizer: str
    validation_fraction: float = 0.0
    shard_tokens: int = 64 * 2**20


@dataclass
class PrepareConfig:
    """Settings of one `puyu data prepare` run.

    Args:
        inputs: files, folders or globs of documents.
        output: the output folder.
        text_field: field holding the text in jsonl/json/csv/parquet records.
        id_field: field holding a document id, if the records have one.
        workers: worker processes.
        unit_bytes: input files are grouped into work units of about this many bytes.
        clean, pii, filters, dedup: each step's settings.
        tokenize: if set, pack the result into token shards under `output/tokens`.
    """

    inputs: list[str]
    output: str
    text_field: str = "text"
    id_field: str | None = None
    workers: int = 2
    unit_bytes: int = 16 * 2**20
    clean: CleanConfig = field(default_factory=CleanConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    pii: PiiConfig = field(default_factory=PiiConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    tokenize: PrepareTokenizeConfig | None = None

    def __post_init__(self) -> None:
        if not self.inputs:
            raise PuyuError("inputs: name at least one file, folder or glob")
        if self.workers < 1:
            raise PuyuError(f"workers must be at least 1, got {self.workers}")


@dataclass
class WorkUnit:
    index: int
    files: list[str]


def plan_units(files: list[Path], unit_bytes: int) -> list[WorkUnit]:
    """Group files, in order, into units of about `unit_bytes` (a large file is a unit of its own)."""
    units: list[WorkUnit] = []
    current: list[str] = []
    size = 0
    for file in files:
        file_size = file.stat().st_size
        if current and size + file_size > unit_bytes:
            units.append(WorkUnit(len(units), current))
            current, size = [], 0
        current.append(str(file))
        size += file_size
    if current:
        units.append(WorkUnit(len(units), current))
    return units


class Layout:
    """Where each pass keeps its files inside the output folder."""

    def __init__(self, output: str | os.PathLike[str]) -> None:
        self.root = Path(output)
        self.work = self.root / "work"
        self.documents = self.root / "documents"

    def unit_docs(self, i: int) -> Path:
        return self.work / f"unit-{i:05d}.jsonl"

    def unit_array(self, i: int, kind: str) -> Path:
        """Per-unit dedup arrays: "exact" keys, LSH "bands", MinHash "signatures" (.npy, memory-mappable)."""
        return self.work / f"unit-{i:05d}.{kind}.npy"

    def unit_done(self, i: int) -> Path:
        return self.work / f"unit-{i:05d}.done.json"

    def part(self, i: int) -> Path:
        return self.documents / f"part-{i:05d}.jsonl"

    def part_done(self, i: int) -> Path:
        return self.work / f"part-{i:05d}.done.json"


# ---- pass 1: read, clean, filter, scrub ----------------------------------------------------------


def process_unit(unit: WorkUnit, config: PrepareConfig) -> dict[str, Any]:
    """Pass 1 for one unit; returns (and stores) its tally. Runs in a worker process."""
    layout = Layout(config.output)
    tally = Tally()
    cleaner = Cleaner(config.clean)
    scrubber = PiiScrubber(config.pii)
    filters = build_filters(config.filters)
    hasher = MinHasher(config.dedup)
    keys: list[np.ndarray] = []
    signatures: list[np.ndarray] = []
    batch: list[str] = []

    def flush() -> None:
        keys.append(exact_keys(batch))
        signatures.append(hasher.signatures(batch))
        batch.clear()

    with atomic_path(layout.unit_docs(unit.index)) as tmp, tmp.open("w", encoding="utf-8") as out:
        for file in unit.files:
            for doc in read_documents(Path(file), tally, text_field=config.text_field, id_field=config.id_field):
                doc = cleaner(doc, tally)
                reason = first_rejection(filters, doc)
                if reason is not None:
                    name, why = reason
                    tally.count(f"filter:{name}", "removed", doc.text)
                    tally.docs[f"reasons/{name}/{why.split(':')[0]}"] += 1
                    continue
                doc = scrubber(doc, tally)
                tally.count("filters", "kept", doc.text)
                out.write(json.dumps(doc.to_json(), ensure_ascii=False) + "\n")
                batch.append(doc.text)
                if len(batch) >= SIGNATURE_BATCH:
                    flush()
    if batch or not keys:
        flush()
    stacked = np.concatenate(signatures)
    arrays = {"exact": np.concatenate(keys), "signatures": stacked, "bands": band_keys(stacked, config.dedup)}
    for kind, array in arrays.items():
        with atomic_path(layout.unit_array(unit.index, kind)) as tmp, tmp.open("wb") as handle:
            np.save(handle, array)
    result = {"files": unit.files, "tally": tally.to_json()}
    atomic_write_text(layout.unit_done(unit.index), json.dumps(result, ensure_ascii=False))
    return result


# ---- pass 2: global deduplication -----------------------------------------------------------------


def find_duplicates(layout: Layout, units: list[WorkUnit], config: DedupConfig) -> tuple[list[np.ndarray], dict]:
    """Duplicate masks per unit (True = drop), over all units in order, and their counts.

    Memory: exact keys (16 B) and LSH band keys (8 B per band) of every document; signatures stay
    memory-mapped on disk and are read only for candidate pairs.
    """
    exact_parts = [np.load(layout.unit_array(u.index, "exact")) for u in units]
    sizes = [len(part) for part in exact_parts]
    total = sum(sizes)
    exact = np.zeros(total, dtype=bool)
    near = np.zeros(total, dtype=bool)
    if config.exact and total:
        exact = find_exact_duplicates(np.concatenate(exact_parts))
    if config.near and total:
        bands = np.concatenate([np.load(layout.unit_array(u.index, "bands")) for u in units])
        rows = ConcatenatedRows([np.load(layout.unit_array(u.index, "signatures"), mmap_mode="r") for u in units])
        roots = near_duplicate_roots(bands, config, rows)
        # An exact copy lands in its original's cluster too; count each removal once, as exact first.
        near = (roots != np.arange(total)) & ~exact
    drop = exact | near
    bounds = np.cumsum([0, *sizes])
    masks = [drop[bounds[i] : bounds[i + 1]] for i in range(len(units))]
    return masks, {"documents": total, "exact": int(exact.sum()), "near": int(near.sum())}


# ---- pass 3: write the surviving documents ---------------------------------------------------------


def write_part(unit: WorkUnit, drop: np.ndarray, config: PrepareConfig) -> dict[str, Any]:
    """Pass 3 for one unit: copy the documents not in `drop`; returns counts and a length histogram."""
    layout = Layout(config.output)
    kept_docs = kept_bytes = dropped_bytes = 0
    lengths: list[int] = []
    with (
        layout.unit_docs(unit.index).open(encoding="utf-8") as source,
        atomic_path(layout.part(unit.index)) as tmp,
        tmp.open("w", encoding="utf-8") as out,
    ):
        for position, line in enumerate(source):
            text = json.loads(line)["text"]
            size = len(text.encode("utf-8", errors="surrogatepass"))
            if drop[position]:
                dropped_bytes += size
                continue
            out.write(line)
            kept_docs += 1
            kept_bytes += size
            lengths.append(len(text))
    histogram = np.histogram(lengths, bins=LENGTH_BINS)[0].tolist()
    result = {"documents": kept_docs, "bytes": kept_bytes, "dropped_bytes": dropped_bytes, "length_hist": histogram}
    atomic_write_text(layout.part_done(unit.index), json.dumps(result))
    return result


# ---- the run --------------------------------------------------------------------------------------


def fingerprint(config: PrepareConfig, files: list[Path]) -> str:
    """What the outputs depend on: every setting but the worker count, and each input's name, size and mtime."""
    settings = to_dict(config)
    settings.pop("workers")
    settings.pop("tokenize")
    inputs = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    blob = json.dumps({"settings": settings, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def prepare(config: PrepareConfig, progress: bool = True) -> dict[str, Any]:
    """Run the whole pipeline; returns the report (also written to the output folder).

    Args:
        config: the run's settings.
        progress: show progress bars.
    """
    from puyu.data.report import write_prepare_report

    layout = Layout(config.output)
    build_filters(config.filters)  # settings errors (unknown language, unreadable blocklist) before anything is written
    input_tally = Tally()
    files = expand_inputs(config.inputs, input_tally)
    units = plan_units(files, config.unit_bytes)
    layout.work.mkdir(parents=True, exist_ok=True)
    layout.documents.mkdir(parents=True, exist_ok=True)
    stamp = layout.work / "fingerprint.txt"
    current = fingerprint(config, files)
    if stamp.is_file() and stamp.read_text().strip() != current:
        raise PuyuError(
            f"{layout.root}: already holds a run with other settings or inputs; use another output folder or delete it"
        )
    atomic_write_text(stamp, current + "\n")

    todo = [u for u in units if not layout.unit_done(u.index).is_file()]
    _run_parallel(process_unit, [(u, config) for u in todo], config.workers, "clean + filter", progress)
    tallies = [json.loads(layout.unit_done(u.index).read_text())["tally"] for u in units]

    masks, dedup_counts = find_duplicates(layout, units, config.dedup)
    todo_parts = [(u, masks[u.index], config) for u in units if not layout.part_done(u.index).is_file()]
    _run_parallel(write_part, todo_parts, config.workers, "deduplicate + write", progress)
    parts = [json.loads(layout.part_done(u.index).read_text()) for u in units]

    tally = input_tally
    for raw in tallies:
        tally.merge(Tally.from_json(raw))
    tokens = None
    if config.tokenize is not None:
        tokens = _tokenize(config, layout, units, progress)
    return write_prepare_report(layout.root, config, files, units, tally, dedup_counts, parts, tokens)


def _run_parallel(fn: Callable[..., Any], jobs: list[tuple], workers: int, label: str, progress: bool) -> None:
    if not jobs:
        return
    bar = tqdm(total=len(jobs), desc=label, unit="unit", disable=not progress)
    if workers == 1 or len(jobs) == 1:
        for job in jobs:
            fn(*job)
            bar.update()
    else:
        # spawn: workers start clean instead of inheriting a forked copy of torch's threads.
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            for future in [pool.submit(fn, *job) for job in jobs]:
                future.result()
                bar.update()
    bar.close()


def _tokenize(config: PrepareConfig, layout: Layout, units: list[WorkUnit], progress: bool) -> dict[str, Any]:
    from puyu.data.shards import read_manifest
    from puyu.data.tokenize import SourceSpec, TokenizeConfig, tokenize_documents

    assert config.tokenize is not None
    manifest = tokenize_documents(
        TokenizeConfig(
            tokenizer=config.tokenize.tokenizer,
            output=str(layout.root / "tokens"),
            validation_fraction=config.tokenize.validation_fraction,
            shard_tokens=config.tokenize.shard_tokens,
            workers=config.workers,
            sources=[SourceSpec(name="prepared", paths=[str(layout.part(u.index)) for u in units])],
        ),
        progress=progress,
    )
    return read_manifest(Path(manifest).parent)
