"""Chinese BM25 terms: character bigrams against jieba's words, side by side on CMMLU.

Known-item retrieval: each document is one CMMLU question with its correct answer; each query is a window of
the question with some characters dropped (typos and omissions), and the task is to rank its own document
first among all the others. Prints recall@1, MRR@10 and indexing speed for both tokenizers.

    .venv/bin/python benchmarks/kb_tokenizers.py [--data ../shared/data/cmmlu/test] [--rows 3000]
"""

from __future__ import annotations

import argparse
import csv
import random
import time
from pathlib import Path

import numpy as np

from puyu.kb.sparse import SparseIndex


def load_rows(folder: Path, limit: int) -> list[str]:
    docs = []
    for path in sorted(folder.glob("*.csv")):
        with path.open(encoding="utf-8") as stream:
            for row in csv.DictReader(stream):
                answer = row.get(row.get("Answer", ""), "")
                docs.append(f"{row['Question']} {answer}")
    random.Random(0).shuffle(docs)
    return docs[:limit]


def make_query(text: str, rng: random.Random) -> str:
    """A 16-character window of the question with about one character in six dropped."""
    question = text.rsplit(" ", 1)[0]
    start = rng.randrange(max(1, len(question) - 16))
    window = question[start : start + 16]
    return "".join(c for c in window if rng.random() > 1 / 6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/cmmlu/test"))
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--queries", type=int, default=500)
    args = parser.parse_args()
    docs = load_rows(Path(args.data), args.rows)
    if not docs:
        raise SystemExit(f"no CMMLU csv files under {args.data} (give --data)")
    rng = random.Random(1)
    targets = rng.sample(range(len(docs)), min(args.queries, len(docs)))
    queries = [make_query(docs[i], rng) for i in targets]
    print(f"{len(docs)} CMMLU documents, {len(queries)} queries\n")
    print("| tokenizer | recall@1 | MRR@10 | index time (s) | query time (ms) |\n|---|---|---|---|---|")
    for method in ("bigram", "jieba"):
        began = time.perf_counter()
        index = SparseIndex.build(docs, method)
        built = time.perf_counter() - began
        began = time.perf_counter()
        first, reciprocal = [], []
        for target, query in zip(targets, queries, strict=True):
            scores = index.scores(query, len(docs))
            top = np.argsort(-scores, kind="stable")[:10]
            rank = int(np.flatnonzero(top == target)[0]) + 1 if target in top else None
            first.append(rank == 1)
            reciprocal.append(1 / rank if rank else 0.0)
        per_query = (time.perf_counter() - began) / len(queries) * 1000
        print(f"| {method} | {np.mean(first):.3f} | {np.mean(reciprocal):.3f} | {built:.2f} | {per_query:.2f} |")


if __name__ == "__main__":
    main()
