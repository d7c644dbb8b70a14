"""`puyu data stats`: documents and bytes, lengths, languages and tokens of a corpus or a token-shard folder."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from puyu.data.document import Tally
from puyu.data.report import MB, plot_length_histogram
from puyu.io import atomic_write_text

# Language detection reads a prefix: enough to decide, cheap on long documents.
LANGUAGE_PREFIX_CHARS = 2000


def collect_stats(
    inputs: Sequence[str],
    out: str | None = None,
    tokenizer: str | None = None,
    text_field: str = "text",
) -> str:
    """Summarise documents (any readable format) or a token-shard folder; write stats.json/.md/.png to `out`.

    Args:
        inputs: document files/folders/globs, or one folder holding a token-shard manifest.json.
        out: report folder, or None to only return the markdown.
        tokenizer: tokenizer folder to count tokens of documents with.
        text_field: field holding the text in structured records.

    Returns:
        The markdown summary.
    """
    if len(inputs) == 1 and (Path(inputs[0]) / "manifest.json").is_file():
        stats = _token_folder_stats(Path(inputs[0]))
        unit = "tokens per document"
    else:
        stats = _document_stats(inputs, tokenizer, text_field)
        unit = "characters per document"
    markdown = _markdown(stats)
    if out is not None:
        folder = Path(out)
        atomic_write_text(folder / "stats.json", json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
        atomic_write_text(folder / "stats.md", markdown + "\n\n![lengths](length_histogram.png)\n")
        hist = stats["length_histogram"]
        plot_length_histogram(folder / "length_histogram.png", hist["bins"], hist["counts"], unit)
    return markdown


def _document_stats(inputs: Sequence[str], tokenizer_dir: str | None, text_field: str) -> dict[str, Any]:
    from puyu.data.filters import detect_language
    from puyu.data.prepare import LENGTH_BINS
    from puyu.data.readers import expand_inputs, read_documents

    tally = Tally()
    files = expand_inputs(list(inputs), tally)
    tokenizer = None
    if tokenizer_dir is not None:
        from puyu.tokenizer import Tokenizer

        tokenizer = Tokenizer.from_pretrained(tokenizer_dir)
    lengths: list[int] = []
    languages: Counter[str] = Counter()
    tokens = 0
    with tqdm(desc="documents", unit="doc") as bar:
        for file in files:
            for doc in read_documents(file, tally, text_field=text_field):
                lengths.append(len(doc.text))
                languages[detect_language(doc.text[:LANGUAGE_PREFIX_CHARS])[0]] += 1
                if tokenizer is not None:
                    tokens += len(tokenizer.encode(doc.text))
                bar.update()
    return {
        "kind": "documents",
        "files": len(files),
        "documents": len(lengths),
        "bytes": tally.bytes["read/ok"],
        "characters": int(sum(lengths)),
        "tokens": tokens if tokenizer is not None else None,
        "languages": dict(languages.most_common()),
        "length_percentiles": _percentiles(lengths),
        "length_histogram": {"bins": LENGTH_BINS.tolist(), "counts": np.histogram(lengths, LENGTH_BINS)[0].tolist()},
        "problems": {"count": tally.problem_count, "examples": [p.to_json() for p in tally.problems[:50]]},
    }


def _token_folder_stats(folder: Path) -> dict[str, Any]:
    from puyu.data.prepare import LENGTH_BINS
    from puyu.data.shards import read_manifest

    manifest = read_manifest(folder)
    splits: dict[str, Any] = {}
    lengths: list[np.ndarray] = []
    for name, shards in manifest.get("splits", {}).items():
        for shard in shards:
            offsets = np.load(folder / shard["index_file"])
            lengths.append(np.diff(offsets))
        splits[name] = {
            "shards": len(shards),
            "documents": sum(s["documents"] for s in shards),
            "tokens": sum(s["tokens"] for s in shards),
        }
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    return {
        "kind": "tokens",
        "folder": str(folder),
        "dtype": manifest.get("dtype"),
        "tokenizer": manifest.get("tokenizer", {}),
        "splits": splits,
        "sources": manifest.get("sources", {}),
        "length_percentiles": _percentiles(all_lengths.tolist()),
        "length_histogram": {
            "bins": LENGTH_BINS.tolist(),
            "counts": np.histogram(all_lengths, LENGTH_BINS)[0].tolist(),
        },
    }


def _percentiles(values: Sequence[int]) -> dict[str, float]:
    if not len(values):
        return {}
    points = np.percentile(np.asarray(values), [0, 10, 50, 90, 99, 100])
    return dict(zip(("min", "p10", "p50", "p90", "p99", "max"), (float(p) for p in points), strict=True))


def _markdown(stats: dict[str, Any]) -> str:
    lines = ["# Data statistics", ""]
    if stats["kind"] == "documents":
        lines += [
            f"- files: {stats['files']:,}",
            f"- documents: {stats['documents']:,}",
            f"- size: {stats['bytes'] / MB:,.2f} MB, {stats['characters']:,} characters",
        ]
        if stats["tokens"] is not None:
            lines.append(f"- tokens: {stats['tokens']:,}")
        languages = ", ".join(f"{lang} {n:,}" for lang, n in list(stats["languages"].items())[:8])
        lines.append(f"- languages: {languages or '-'}")
        lines.append(f"- input problems: {stats['problems']['count']:,}")
    else:
        lines.append(f"- token dtype: {stats['dtype']}")
        lines += ["", "| split | shards | documents | tokens |", "| --- | ---: | ---: | ---: |"]
        for name, split in stats["splits"].items():
            lines.append(f"| {name} | {split['shards']} | {split['documents']:,} | {split['tokens']:,} |")
    percentiles = stats["length_percentiles"]
    if percentiles:
        unit = "characters" if stats["kind"] == "documents" else "tokens"
        shown = ", ".join(f"{k} {v:,.0f}" for k, v in percentiles.items())
        lines += ["", f"Document length ({unit}): {shown}"]
    return "\n".join(lines)
