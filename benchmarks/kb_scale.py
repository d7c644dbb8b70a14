"""Knowledge-base build speed, query latency and memory at ~100k chunks, with bm25s called directly beside it.

The corpus is the Alpaca records of ../shared/data (instruction, input, output), copied `--copies` times with
a copy tag, written as Markdown files of 500 records. Dense search is timed on random unit vectors of the
embedder's width (its cost does not depend on the values); BM25 on the real text.

    .venv/bin/python benchmarks/kb_scale.py [--alpaca ../shared/data/alpaca/alpaca_5000.json] [--copies 20]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from puyu.kb import KnowledgeBase, build
from puyu.kb.fusion import reciprocal_rank_fusion, top_k


def write_corpus(alpaca: Path, copies: int, folder: Path) -> tuple[int, list[str]]:
    records = json.loads(alpaca.read_text(encoding="utf-8"))
    texts = [" ".join(part for part in (r["instruction"], r["input"], r["output"]) if part) for r in records]
    written = 0
    for copy in range(copies):
        for first in range(0, len(texts), 500):
            body = "\n\n".join(f"{text} (set {copy})" for text in texts[first : first + 500])
            path = folder / f"c{copy:03d}-{first:05d}.md"
            path.write_text(f"# Records {copy}-{first}\n\n{body}\n", encoding="utf-8")
            written += path.stat().st_size
    return written, [r["instruction"] for r in records]


def percentiles(samples: list[float]) -> str:
    p50, p99 = np.percentile(np.asarray(samples) * 1000, [50, 99])
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--alpaca", default=str(Path(__file__).resolve().parents[2] / "shared/data/alpaca/alpaca_5000.json")
    )
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--chunk-size", type=int, default=400)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dim", type=int, default=384)
    args = parser.parse_args()
    process = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        size, queries = write_corpus(Path(args.alpaca), args.copies, docs)
        queries = queries[: args.queries]
        began = time.perf_counter()
        report = build([docs], Path(tmp) / "kb", chunk_size=args.chunk_size)
        seconds = time.perf_counter() - began
        rate = size / 1e6 / seconds
        print(f"build: {report.chunks} chunks from {size / 1e6:.1f} MB in {seconds:.1f}s = {rate:.2f} MB/s")
        began = time.perf_counter()
        again = build([docs], Path(tmp) / "kb")
        print(f"rebuild with nothing changed: {time.perf_counter() - began:.1f}s ({again.unchanged} files unchanged)")

        before = process.memory_info().rss
        kb = KnowledgeBase.open(Path(tmp) / "kb", embedder=None)
        print(f"open: RSS +{(process.memory_info().rss - before) / 2**20:.0f} MiB")
        ours, direct = [], []
        for query in queries:
            began = time.perf_counter()
            kb.search(query, k=5, mode="bm25")
            ours.append(time.perf_counter() - began)
            began = time.perf_counter()
            scores = kb.sparse.retriever.get_scores(kb.sparse.query_terms(query))
            np.argpartition(-scores, 5)[:5]
            direct.append(time.perf_counter() - began)
        print(f"BM25 search, puyu: {percentiles(ours)}; bm25s get_scores + top-5 directly: {percentiles(direct)}; "
              f"ratio of medians {np.median(ours) / np.median(direct):.2f}")  # fmt: skip

        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((len(kb.chunks), args.dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        dense, hybrid = [], []
        for query in queries:
            query_vector = rng.standard_normal(args.dim, dtype=np.float32)
            began = time.perf_counter()
            cosine = vectors @ query_vector
            dense_rank = top_k(cosine, 50)
            dense.append(time.perf_counter() - began)
            bm25 = kb.bm25_scores(query)
            reciprocal_rank_fusion([top_k(bm25, 50), dense_rank])[:5]
            hybrid.append(time.perf_counter() - began)
        print(f"dense search ({args.dim}-d, query embedding excluded): {percentiles(dense)}")
        print(f"hybrid search (BM25 + dense + RRF, query embedding excluded): {percentiles(hybrid)}")
        print(f"vectors: {vectors.nbytes / 2**20:.0f} MiB; process RSS {process.memory_info().rss / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
