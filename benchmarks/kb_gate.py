"""The refuse-to-answer gate against HuixiangDou's single threshold, and retrieval recall@5 by mode.

Builds (or updates: only changed files are redone) a knowledge base over DOCS, computes the gate's signals
for labelled on-topic and off-topic questions, and scores both gates by the same stratified folds:
- single threshold: HuixiangDou's method, the top-1 dense similarity (top-1 BM25 without an embedder)
  against the threshold that maximises precision + recall on the training folds;
- calibrated: puyu's logistic regression over all the signals.

    .venv/bin/python benchmarks/kb_gate.py [--embedder DIR] [--docs docs] \
        [--questions benchmarks/kb_data/docs_questions.jsonl] [--kb runs/bench/kb-docs]
"""

from __future__ import annotations

import argparse
import json
import time

from puyu.eval.kb_eval import retrieval_metrics
from puyu.kb import KnowledgeBase, build
from puyu.kb.embedders import EncoderEmbedder
from puyu.kb.gate import calibrate
from puyu.kb.questions import read_labelled_questions


def _row(name: str, scores: dict) -> str:
    low, high = scores["f1_95"]
    return (
        f"| {name} | {100 * scores['precision']:.1f} | {100 * scores['recall']:.1f} | "
        f"**{100 * scores['f1']:.1f}** | {100 * low:.1f}-{100 * high:.1f} |"
    )


def gate_table(kb: KnowledgeBase, questions: list[dict], folds: int, label: str) -> dict:
    good = [kb.signals(q["question"]) for q in questions if q["answerable"]]
    bad = [kb.signals(q["question"]) for q in questions if not q["answerable"]]
    result = calibrate(good, bad, folds=folds)
    single = result["single_threshold"]
    print(f"\n{label}: {len(good)} on-topic, {len(bad)} off-topic, {result['folds']}-fold cross-validation")
    print("| gate | precision | recall | F1 | F1 95% bootstrap |\n|---|---|---|---|---|")
    print(_row(f"single threshold on {single['feature']} (HuixiangDou)", single))
    print(_row(f"calibrated over {', '.join(result['features'])}", result["cv"]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", default="docs")
    parser.add_argument("--questions", default="benchmarks/kb_data/docs_questions.jsonl")
    parser.add_argument("--embedder", default=None, help="encoder folder (sentence-transformers layout)")
    parser.add_argument("--kb", default="runs/bench/kb-docs")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    embedder = EncoderEmbedder(args.embedder) if args.embedder else None
    began = time.perf_counter()
    report = build([args.docs], args.kb, embedder=embedder)
    print(f"kb: {report.chunks} chunks from {report.documents} documents, {report.embedded} embedded now "
          f"({time.perf_counter() - began:.1f}s)")  # fmt: skip
    questions = read_labelled_questions(args.questions)
    figures: dict = {}
    sparse_only = KnowledgeBase.open(args.kb, embedder=None)
    figures["bm25_only"] = gate_table(sparse_only, questions, args.folds, "BM25 only (no embedder)")
    if embedder is not None:
        hybrid = KnowledgeBase.open(args.kb, embedder)
        figures["with_embedder"] = gate_table(
            hybrid, questions, args.folds, f"with embedder {embedder.identity['name']}"
        )
        print("\n| retrieval | recall@5 | MRR |\n|---|---|---|")
        for mode in ("bm25", "dense", "hybrid"):
            scores = retrieval_metrics(hybrid, questions, 5, mode)
            figures[f"retrieval_{mode}"] = scores
            print(f"| {mode} | {100 * scores['recall@5']:.1f} | {scores['mrr']:.3f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(figures, out, indent=1)


if __name__ == "__main__":
    main()
