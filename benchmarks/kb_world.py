"""The quickstart world as a knowledge base: gate and retrieval figures on its labelled questions.

One page per person of the world (seed 0, default size); good questions ask a person's job or city, bad ones
are off-topic chat or the same questions about people who are not in the world.

    .venv/bin/python benchmarks/kb_world.py [--seed 0] [--embedder DIR] [--out runs/bench/kb-world]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kb_gate import gate_table
from puyu.eval.kb_eval import retrieval_metrics
from puyu.kb import KnowledgeBase, build
from puyu.kb.embedders import EncoderEmbedder
from puyu.pipeline.world import build_world
from puyu.pipeline.world_kb import world_questions, write_world_documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", default="default")
    parser.add_argument("--embedder", default=None)
    parser.add_argument("--out", default="runs/bench/kb-world")
    args = parser.parse_args()
    out = Path(args.out)
    world = build_world(args.seed, args.size)
    write_world_documents(world, out / "docs")
    embedder = EncoderEmbedder(args.embedder) if args.embedder else None
    report = build([out / "docs"], out / "kb", embedder=embedder)
    questions = world_questions(world, args.seed)
    print(f"world seed {args.seed}: {len(world.people)} people, {report.chunks} chunks, {len(questions)} questions")
    gate_table(KnowledgeBase.open(out / "kb", embedder=None), questions, 5, "BM25 only")
    if embedder is not None:
        gate_table(KnowledgeBase.open(out / "kb", embedder), questions, 5, f"with {embedder.identity['name']}")
    kb = KnowledgeBase.open(out / "kb", embedder)
    print("\n| retrieval | recall@5 | MRR |\n|---|---|---|")
    for mode in ["bm25"] + (["dense", "hybrid"] if embedder is not None else []):
        scores = retrieval_metrics(kb, questions, 5, mode)
        print(f"| {mode} | {100 * scores['recall@5']:.1f} | {scores['mrr']:.3f} |")


if __name__ == "__main__":
    main()
