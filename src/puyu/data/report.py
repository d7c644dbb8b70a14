"""Data reports: what went in, what each step removed and why, what came out (markdown, JSON, PNG)."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from puyu.configuration import to_dict
from puyu.data.document import Tally
from puyu.io import atomic_path, atomic_write_text

MB = 1e6


def write_prepare_report(
    root: Path,
    config: Any,
    files: Sequence[Path],
    units: Sequence[Any],
    tally: Tally,
    dedup: dict[str, int],
    parts: Sequence[dict[str, Any]],
    tokens: dict[str, Any] | None,
) -> dict[str, Any]:
    """Write report.json, report.md and length_histogram.png for a `prepare` run; return the JSON."""
    from puyu.data.prepare import LENGTH_BINS

    histogram = np.sum([p["length_hist"] for p in parts], axis=0).tolist() if parts else []
    docs, sizes = tally.docs, tally.bytes
    removed = {
        key.split("/")[0].removeprefix("filter:"): {"documents": docs[key], "bytes": sizes[key]}
        for key in sorted(docs)
        if key.startswith("filter:")
    }
    reasons = Counter({key.removeprefix("reasons/"): n for key, n in docs.items() if key.startswith("reasons/")})
    report = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "output": str(root),
        "inputs": {"files": len(files), "units": len(units), "bytes": sum(f.stat().st_size for f in files)},
        "read": {"documents": docs["read/ok"], "bytes": sizes["read/ok"]},
        "removed_by_filter": removed,
        "filter_reasons": dict(reasons.most_common()),
        "after_filters": {"documents": docs["filters/kept"], "bytes": sizes["filters/kept"]},
        "cleaning": {k.removeprefix("clean/"): n for k, n in sorted(docs.items()) if k.startswith("clean/")},
        "pii": {k.removeprefix("pii/"): n for k, n in sorted(docs.items()) if k.startswith("pii/")},
        "duplicates": {**dedup, "bytes": sum(p["dropped_bytes"] for p in parts)},
        "written": {
            "documents": sum(p["documents"] for p in parts),
            "bytes": sum(p["bytes"] for p in parts),
            "files": [f"documents/part-{u.index:05d}.jsonl" for u in units],
        },
        "problems": {
            "count": tally.problem_count,
            "by_kind": {k.removeprefix("problems/"): n for k, n in sorted(docs.items()) if k.startswith("problems/")},
            "examples": [p.to_json() for p in tally.problems],
        },
        "length_histogram": {"bins": LENGTH_BINS.tolist(), "counts": histogram},
        "tokens": _token_summary(tokens) if tokens else None,
        "settings": to_dict(config),
    }
    atomic_write_text(root / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    plot_length_histogram(root / "length_histogram.png", LENGTH_BINS, histogram, "Documents written")
    atomic_write_text(root / "report.md", render_prepare_markdown(report))
    return report


def _token_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    splits = manifest.get("splits", {})
    return {
        "dtype": manifest.get("dtype"),
        "tokenizer": manifest.get("tokenizer", {}),
        "splits": {
            name: {
                "documents": sum(s.get("documents", 0) for s in shards),
                "tokens": sum(s.get("tokens", 0) for s in shards),
                "shards": len(shards),
            }
            for name, shards in splits.items()
        },
    }


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _row(label: str, documents: int, size: int | None, read_docs: int) -> str:
    megabytes = f"{size / MB:,.2f}" if size is not None else ""
    return f"| {label} | {documents:,} | {megabytes} | {_pct(documents, read_docs)} |"


def render_prepare_markdown(report: dict[str, Any]) -> str:
    read_docs, read_bytes = report["read"]["documents"], report["read"]["bytes"]
    removed_docs = sum(v["documents"] for v in report["removed_by_filter"].values())
    removed_bytes = sum(v["bytes"] for v in report["removed_by_filter"].values())
    dup = report["duplicates"]
    written = report["written"]
    lines = [
        "# Data preparation report",
        "",
        f"{report['inputs']['files']} input files ({report['inputs']['bytes'] / MB:,.1f} MB) → `{report['output']}`, "
        f"{report['created']}.",
        "",
        "| stage | documents | MB | share of read documents |",
        "| --- | ---: | ---: | ---: |",
        _row("read", read_docs, read_bytes, read_docs),
        _row("removed by quality filters", removed_docs, removed_bytes, read_docs),
        _row("removed as exact duplicates", dup["exact"], None, read_docs),
        _row("removed as near duplicates", dup["near"], None, read_docs),
        _row("written", written["documents"], written["bytes"], read_docs),
        "",
        "## Removed by each filter",
        "",
        "| filter | documents | MB | share of read documents |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, counts in sorted(report["removed_by_filter"].items(), key=lambda kv: -kv[1]["documents"]):
        lines.append(_row(name, counts["documents"], counts["bytes"], read_docs))
    if report["filter_reasons"]:
        lines += ["", "Most frequent reasons:", ""]
        lines += [f"- `{reason}`: {n:,}" for reason, n in list(report["filter_reasons"].items())[:10]]
    for title, key in (("Cleaning", "cleaning"), ("PII replaced", "pii")):
        if report[key]:
            lines += ["", f"## {title}", "", "| what | count |", "| --- | ---: |"]
            lines += [f"| {name} | {n:,} |" for name, n in report[key].items()]
    if report["tokens"]:
        tokens = report["tokens"]
        lines += ["", "## Tokens", "", f"dtype `{tokens['dtype']}`.", ""]
        lines += ["| split | documents | tokens | shards |", "| --- | ---: | ---: | ---: |"]
        for name, split in tokens["splits"].items():
            lines.append(f"| {name} | {split['documents']:,} | {split['tokens']:,} | {split['shards']} |")
    lines += _problem_lines(report["problems"])
    lines += ["", "## Document lengths", "", "![length histogram](length_histogram.png)", ""]
    return "\n".join(lines)


def _problem_lines(problems: dict[str, Any], examples_per_kind: int = 3) -> list[str]:
    """Problems grouped by kind, with a few examples of each (file and line)."""
    lines = ["", f"## Input problems: {problems['count']:,}", ""]
    if not problems["count"]:
        return lines
    lines += ["| kind | count | examples |", "| --- | ---: | --- |"]
    for kind, count in sorted(problems["by_kind"].items(), key=lambda kv: -kv[1]):
        shown = [p for p in problems["examples"] if p["message"].split(":")[0] == kind][:examples_per_kind]
        where = "; ".join(f"`{p['source']}`" + (f":{p['line']}" if p["line"] is not None else "") for p in shown)
        lines.append(f"| {kind} | {count:,} | {where} |")
    return lines


def plot_length_histogram(path: Path, bins: Sequence[int], counts: Sequence[int], title: str) -> None:
    """Bar chart of document lengths on a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.5), dpi=110)
    edges = np.asarray(bins, dtype=float)
    if len(counts):
        axis.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#3b6ea8", edgecolor="white")
    axis.set_xscale("log")
    axis.set_xlabel("characters per document")
    axis.set_ylabel("documents")
    axis.set_title(title)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
