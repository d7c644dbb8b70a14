"""Documents (JSONL) → token shards, in parallel over input files, resumable.

Each input file is one unit of work: its documents are tokenized in order and written to its own shards
(`{split}-{source}-{file:05d}-{part:04d}.bin/.idx`, see `puyu.data.shards` for the format), rolling over
to the next part once a shard holds `shard_tokens` tokens (documents are never cut). Outputs therefore do
not depend on the number of workers, and the manifest lists shards in source, file and part order.

A document goes to the validation split when a hash of its id falls below `validation_fraction`, so the
split is the same on every run and every resume. After each shard a small progress record is written
under `.progress/`; a re-run skips shards that are listed there and still on disk (their documents are
read again but not tokenized) and redoes the rest. The manifest is written last.

With `workers > 1` the files go to a pool of spawned processes, so a script calling `tokenize_documents`
needs the usual `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from puyu.data.document import Document, Tally
from puyu.data.readers import expand_inputs, read_documents
from puyu.data.shards import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    SPLITS,
    ShardWriter,
    numpy_dtype,
    read_manifest,
    token_dtype,
    tokenizer_sha256,
)
from puyu.errors import PuyuError, one_line
from puyu.io import atomic_write_text
from puyu.tokenizer import Tokenizer

PROGRESS_DIR = ".progress"
_SHARD_FILE = re.compile(r"^(train|validation)-.+-\d{5}-\d{4}\.(bin|idx)$")
# What `puyu.io.atomic_path` leaves behind when a process is killed while writing a shard.
_SHARD_TEMP = re.compile(r"^\.(train|validation)-.+-\d{5}-\d{4}\.(bin|idx)\..+\.tmp$")
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9_.]+$")


@dataclass
class SourceSpec:
    """One source of documents.

    Args:
        name: Short name used in shard file names and the manifest (letters, digits, `_` and `.`).
        paths: Files, folders or glob patterns, read by `puyu.data.readers` (JSON Lines, plain or gzip/zstd
            compressed, and the other formats it reads). JSONL rows are `Document.to_json()` records or plain
            objects with the text field; rows without an "id" get "<path>:<line>".
        weight: Sampling weight recorded in the manifest for mixing.
    """

    name: str
    paths: list[str]
    weight: float = 1.0

    @classmethod
    def parse(cls, spec: str) -> SourceSpec:
        """`NAME=WEIGHT:PATH_OR_GLOB` (or `NAME=PATH_OR_GLOB`, weight 1), as the CLI's --source takes it."""
        name, sep, rest = spec.partition("=")
        if not sep or not name or not rest:
            raise PuyuError(f"--source {spec!r}: expected NAME=WEIGHT:PATH (e.g. web=2.0:data/web/*.jsonl)")
        weight, colon, path = rest.partition(":")
        try:
            return cls(name=name, paths=[path], weight=float(weight)) if colon else cls(name=name, paths=[rest])
        except ValueError:
            raise PuyuError(f"--source {spec!r}: weight {weight!r} is not a number") from None


@dataclass
class TokenizeConfig:
    """What to tokenize and how.

    Args:
        tokenizer: The tokenizer folder.
        output: The dataset folder to write.
        text_field: The JSON field holding the text.
        validation_fraction: Share of documents (by a hash of their id) that go to the validation split.
        shard_tokens: A shard rolls over once it holds this many tokens.
        workers: Processes tokenizing input files in parallel.
        sources: The sources; dicts are accepted and turned into `SourceSpec`.
    """

    tokenizer: str
    output: str
    text_field: str = "text"
    validation_fraction: float = 0.0
    shard_tokens: int = 64 * 2**20
    workers: int = 1
    sources: list[SourceSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sources = [s if isinstance(s, SourceSpec) else SourceSpec(**s) for s in self.sources]
        if not self.sources:
            raise PuyuError("tokenize: no sources given")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise PuyuError(f"validation_fraction={self.validation_fraction}: must be in [0, 1)")
        if self.shard_tokens < 1:
            raise PuyuError(f"shard_tokens={self.shard_tokens}: must be positive")
        if self.workers < 1:
            raise PuyuError(f"workers={self.workers}: must be at least 1")
        names: set[str] = set()
        for s in self.sources:
            if not _SOURCE_NAME.match(s.name):
                raise PuyuError(f"source name {s.name!r}: use letters, digits, '_' and '.' only")
            if s.name in names:
                raise PuyuError(f"source name {s.name!r}: given twice")
            if not s.weight > 0:
                raise PuyuError(f"source {s.name!r}: weight {s.weight} must be positive")
            if isinstance(s.paths, str):
                s.paths = [s.paths]
            names.add(s.name)


@dataclass(frozen=True)
class _FileTask:
    source: str
    file_index: int
    path: str
    output: str
    text_field: str
    validation_fraction: float
    shard_tokens: int
    dtype: str
    vocab_size: int
    fingerprint: str

    def shard_name(self, split: str, part: int) -> str:
        return f"{split}-{self.source}-{self.file_index:05d}-{part:04d}"

    @property
    def record_path(self) -> Path:
        return Path(self.output) / PROGRESS_DIR / f"{self.source}-{self.file_index:05d}.json"


def in_validation(doc_id: str, fraction: float) -> bool:
    """Whether a document goes to the validation split: a hash of its id, so every run agrees."""
    if fraction <= 0.0:
        return False
    h = int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
    return h < fraction * 2**64


def document_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    """A document as the shards hold it: the tokenizer's output (BOS as it adds it) ending in one EOS."""
    ids = tokenizer.encode(text, add_special_tokens=True)
    eos = tokenizer.eos_id
    assert eos is not None  # tokenize_documents refuses tokenizers without EOS
    # With add_eos the tokenizer has ended the document already; otherwise EOS is added here, even after
    # a literal EOS at the end of the text (that one is content).
    if not (tokenizer.add_eos and ids and ids[-1] == eos):
        ids.append(eos)
    return ids


# ---------------------------------------------------------------------- reading input


def _read_documents(path: Path, text_field: str, tally: Tally, on_bytes: Callable[[int], None]) -> Iterator[Document]:
    """The usable documents of one file; unusable records are counted in the tally with their line."""
    try:
        size = path.stat().st_size
    except OSError:
        size = 0  # read_documents reports the unreadable file
    reported = 0
    for doc in read_documents(path, tally, text_field=text_field, id_field="id"):
        # Progress in text characters, capped by the file size (compressed files hold more text).
        step = min(len(doc.text), size - reported)
        reported += step
        on_bytes(step)
        try:
            doc.text.encode("utf-8")
        except UnicodeEncodeError as e:  # lone surrogates from JSON escapes; tokenizers reject them
            tally.problem(str(path), _line_of(path, doc.id), f"invalid text: {one_line(e)}")
            continue
        yield doc
    on_bytes(size - reported)


def _line_of(path: Path, doc_id: str) -> int | None:
    """The line in a reader's default id "<path>:<line>", if the id is one."""
    head, _, tail = doc_id.rpartition(":")
    return int(tail) if head == str(path) and tail.isdigit() else None


# ---------------------------------------------------------------------- one input file (runs in a worker)

_WORKER: dict[str, Any] = {}


def _init_worker(tokenizer_folder: str, counter: Any) -> None:
    _WORKER["tokenizer"] = Tokenizer.from_pretrained(tokenizer_folder)

    def add(n: int) -> None:
        with counter.get_lock():
            counter.value += n

    _WORKER["progress"] = add


def _intact(folder: Path, entry: dict[str, Any], itemsize: int) -> bool:
    bin_path, idx_path = folder / entry["file"], folder / entry["index_file"]
    return bin_path.is_file() and idx_path.is_file() and bin_path.stat().st_size == entry["tokens"] * itemsize


def _load_record(task: _FileTask, key: dict[str, Any]) -> dict[str, Any] | None:
    try:
        record = json.loads(task.record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(record, dict) and all(record.get(k) == v for k, v in key.items())
    return record if ok else None


def _record_key(task: _FileTask) -> dict[str, Any]:
    """What a progress record must match to be trusted: the run's config and the input file as it is now."""
    try:
        stat = os.stat(task.path)
        size, mtime = stat.st_size, stat.st_mtime_ns
    except OSError:
        size = mtime = None
    return {"fingerprint": task.fingerprint, "path": task.path, "input_size": size, "input_mtime_ns": mtime}


def _tokenize_file(task: _FileTask) -> dict[str, Any]:
    """Tokenize one input file into its shards, resuming from its progress record."""
    tokenizer: Tokenizer = _WORKER["tokenizer"]
    on_bytes: Callable[[int], None] = _WORKER.get("progress") or (lambda n: None)
    folder = Path(task.output)
    itemsize = numpy_dtype(task.dtype).itemsize
    key = _record_key(task)
    record = _load_record(task, key)
    # Shards already written: the leading run of listed shards still on disk, per split.
    done: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    if record is not None:
        for split in SPLITS:
            for entry in record["shards"][split]:
                if not _intact(folder, entry, itemsize):
                    break
                done[split].append(entry)
        if record.get("complete") and all(len(done[s]) == len(record["shards"][s]) for s in SPLITS):
            on_bytes(os.path.getsize(task.path))
            return {"shards": record["shards"], "tally": record["tally"], "skipped": True}

    shards = {split: list(done[split]) for split in SPLITS}
    to_skip = {split: sum(e["documents"] for e in done[split]) for split in SPLITS}
    writers: dict[str, ShardWriter | None] = dict.fromkeys(SPLITS)
    tally = Tally()

    def save_record(complete: bool) -> None:
        record = {**key, "shards": shards, "complete": complete, "tally": tally.to_json() if complete else None}
        atomic_write_text(task.record_path, json.dumps(record))

    def close(split: str) -> None:
        writer = writers[split]
        assert writer is not None
        writers[split] = None
        shards[split].append(writer.close())
        save_record(complete=False)

    try:
        for doc in _read_documents(Path(task.path), task.text_field, tally, on_bytes):
            text = doc.text
            if not text:
                tally.count("tokenize", "empty")
                continue
            split = "validation" if in_validation(doc.id, task.validation_fraction) else "train"
            tally.count("tokenize", split, text)
            if to_skip[split]:
                to_skip[split] -= 1  # already in a shard kept from an earlier run
                continue
            writer = writers[split]
            if writer is None:
                name = task.shard_name(split, len(shards[split]))
                writer = writers[split] = ShardWriter(folder, name, task.dtype, task.vocab_size)
            writer.add(document_ids(tokenizer, text))
            if writer.tokens >= task.shard_tokens:
                close(split)
        for split in SPLITS:
            if writers[split] is not None:
                close(split)
    except BaseException:
        for writer in writers.values():
            if writer is not None:
                writer.abort()
        raise
    save_record(complete=True)
    return {"shards": shards, "tally": tally.to_json(), "skipped": False}


# ---------------------------------------------------------------------- the whole run


def _clear(folder: Path, everything: bool) -> None:
    """Remove temporaries of killed runs; with `everything`, also the shards and progress records of an
    unfinished run made with another config."""
    for path in folder.iterdir():
        if path.is_file() and (_SHARD_TEMP.match(path.name) or (everything and _SHARD_FILE.match(path.name))):
            path.unlink()
    progress = folder / PROGRESS_DIR
    if everything and progress.is_dir():
        for path in progress.iterdir():
            path.unlink()


def _run_tasks(tasks: list[_FileTask], config: TokenizeConfig, tokenizer: Tokenizer, bar: Any) -> list[dict[str, Any]]:
    if config.workers == 1 or len(tasks) == 1:
        _WORKER["tokenizer"] = tokenizer
        _WORKER["progress"] = bar.update
        try:
            return [_tokenize_file(task) for task in tasks]
        finally:
            _WORKER.clear()
    # spawn: safe with threads in the parent (torch, tokenizers) and the same on every platform.
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("q", 0)
    processes = min(config.workers, len(tasks))
    with ctx.Pool(processes, initializer=_init_worker, initargs=(config.tokenizer, counter)) as pool:
        pending = [pool.apply_async(_tokenize_file, (task,)) for task in tasks]
        shown = 0
        for result in pending:
            while not result.ready():
                result.wait(0.2)
                bar.update(counter.value - shown)
                shown = counter.value
        bar.update(counter.value - shown)
        return [result.get() for result in pending]


def tokenize_documents(config: TokenizeConfig, progress: bool = True) -> Path:
    """Tokenize the sources' documents into token shards with a manifest.

    Args:
        config: What to tokenize and where to write it.
        progress: Show a progress bar (bytes of input read).

    Returns:
        The path of the written `manifest.json`.

    Raises:
        PuyuError: An input or the tokenizer is missing, the tokenizer has no EOS token, the output
            already holds a dataset made with another config, or a token id falls outside the vocabulary.
    """
    from tqdm.auto import tqdm

    output = Path(config.output)
    tokenizer = Tokenizer.from_pretrained(config.tokenizer)
    if tokenizer.eos_id is None:
        raise PuyuError(f"{config.tokenizer}: the tokenizer has no EOS token to separate documents")
    dtype = token_dtype(tokenizer.vocab_size)
    input_tally = Tally()  # files of unknown type met in folders and globs
    inputs = {s.name: expand_inputs(s.paths, input_tally) for s in config.sources}
    tok_info = {
        "path": str(config.tokenizer),
        "name": Path(config.tokenizer).resolve().name,
        "sha256": tokenizer_sha256(tokenizer),
        "vocab_size": tokenizer.vocab_size,
        "bos_id": tokenizer.bos_id,
        "eos_id": tokenizer.eos_id,
        "add_bos": tokenizer.add_bos,
        "backend": tokenizer.backend_kind,
    }
    # Everything that decides the shards' contents; a resume must agree on all of it.
    decisive = {
        "format": [FORMAT_NAME, FORMAT_VERSION],
        "tokenizer": tok_info["sha256"],
        "text_field": config.text_field,
        "validation_fraction": config.validation_fraction,
        "shard_tokens": config.shard_tokens,
        "inputs": {name: [str(p) for p in paths] for name, paths in inputs.items()},
    }
    fingerprint = hashlib.sha256(json.dumps(decisive, sort_keys=True).encode("utf-8")).hexdigest()

    output.mkdir(parents=True, exist_ok=True)
    if (output / MANIFEST).is_file():
        previous = read_manifest(output)
        if previous.get("fingerprint") != fingerprint:
            raise PuyuError(
                f"{output}: already holds a dataset tokenized with another config or inputs; "
                "remove it or choose another output folder"
            )
        # Until this run finishes the folder may change, so it must not look complete.
        (output / MANIFEST).unlink()
    run_file = output / PROGRESS_DIR / "run.json"
    try:
        same_run = json.loads(run_file.read_text(encoding="utf-8")).get("fingerprint") == fingerprint
    except (OSError, ValueError, AttributeError):
        same_run = False
    _clear(output, everything=not same_run)
    if not same_run:
        atomic_write_text(run_file, json.dumps({"fingerprint": fingerprint}))

    tasks = [
        _FileTask(
            source=name,
            file_index=i,
            path=str(path),
            output=str(output),
            text_field=config.text_field,
            validation_fraction=config.validation_fraction,
            shard_tokens=config.shard_tokens,
            dtype=dtype,
            vocab_size=tokenizer.vocab_size,
            fingerprint=fingerprint,
        )
        for name, paths in inputs.items()
        for i, path in enumerate(paths)
    ]
    total_bytes = sum(Path(t.path).stat().st_size for t in tasks)
    with tqdm(total=total_bytes, unit="B", unit_scale=True, desc="tokenize", disable=not progress) as bar:
        results = _run_tasks(tasks, config, tokenizer, bar)

    manifest = _manifest(config, tasks, results, tok_info, dtype, fingerprint, input_tally)
    path = output / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return path


def _manifest(
    config: TokenizeConfig,
    tasks: list[_FileTask],
    results: list[dict[str, Any]],
    tok_info: dict[str, Any],
    dtype: str,
    fingerprint: str,
    tally: Tally,
) -> dict[str, Any]:
    splits: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    sources = {s.name: {"documents": 0, "tokens": 0, "weight": s.weight} for s in config.sources}
    for task, result in zip(tasks, results, strict=True):
        tally.merge(Tally.from_json(result["tally"]))
        for split in SPLITS:
            for entry in result["shards"][split]:
                splits[split].append({**entry, "source": task.source, "input": task.path})
                sources[task.source]["documents"] += entry["documents"]
                sources[task.source]["tokens"] += entry["tokens"]
    every = [entry for shards in splits.values() for entry in shards]
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "tokenizer": tok_info,
        "dtype": dtype,
        "totals": {"documents": sum(e["documents"] for e in every), "tokens": sum(e["tokens"] for e in every)},
        "splits": splits,
        "sources": sources,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": asdict(config),
        "fingerprint": fingerprint,
        "tally": tally.to_json(),
    }
