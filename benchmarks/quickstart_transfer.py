"""Where do the quickstart's instruction skills get lost? The base model in its corpus's layout against the
SFT model in the chat layout, on the same held-out questions.

For a finished `puyu quickstart` run this asks, greedily:

* base, corpus layout: `Question: {q} Answer:` (the Q&A pages and sum drills of the pretraining corpus);
* SFT, chat layout: `{q}` as a user turn (what `puyu eval` asks);
* SFT, corpus layout: what fine-tuning left of the base's skills in the base's own layout.

Questions: every held-out person and English relation of `world_facts_qa` (correct when the reply contains
the answer, and, separately, when it also names the person asked about), and one-digit sums `What is a plus
b?` over all 100 pairs (correct when the reply holds `a + b = c`). A skill the base shows in its own layout
and the SFT model lacks in chat was lost in fine-tuning, not missing from pretraining; the last row tells
whether it was overwritten (gone in both layouts) or only not carried into the chat layout.

    .venv/bin/python benchmarks/quickstart_transfer.py runs/quickstart
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from puyu.engine.llm import LLM
from puyu.generation.sampling import SamplingParams
from puyu.pipeline.questions import EVAL_RELATIONS, relation
from puyu.pipeline.world import World


def _stage(run: Path, name: str) -> Path:
    """The finished folder of stage `name` (the newest, if a rerun left several)."""
    done = sorted(run.glob(f"stages/{name}-*/stage.json"), key=lambda p: p.stat().st_mtime)
    if not done:
        raise SystemExit(f"{run}: no finished {name} stage (run `puyu quickstart --out {run}` first)")
    return done[-1].parent


def questions(world: World) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(question, answer, person's name) about held-out people, and (question, expected equation) sums."""
    facts = []
    for index in world.held_out:
        person = world.people[index]
        for name in EVAL_RELATIONS:
            rel = relation(name)
            facts.append((rel.en_train[0].format(n=person.name.en), rel.value(world, person, "en"), person.name.en))
    sums = [(f"What is {a} plus {b}?", f"{a} + {b} = {a + b}") for a in range(10) for b in range(10)]
    return facts, sums


def score(replies: list[str], facts: list[tuple[str, str, str]], sums: list[tuple[str, str]]) -> dict[str, float]:
    fact_replies, sum_replies = replies[: len(facts)], replies[len(facts) :]
    found = [answer in reply for reply, (_, answer, _) in zip(fact_replies, facts, strict=True)]
    named = [ok and person in reply for ok, reply, (_, _, person) in zip(found, fact_replies, facts, strict=True)]
    added = [equation in reply for reply, (_, equation) in zip(sum_replies, sums, strict=True)]
    return {
        "facts: answer": 100 * sum(found) / len(found),
        "facts: answer and name": 100 * sum(named) / len(named),
        "one-digit sums": 100 * sum(added) / len(added),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a quickstart output folder")
    args = parser.parse_args()
    world = World.load(_stage(args.run, "world") / "world.json")
    facts, sums = questions(world)
    asked = [q for q, _, _ in facts] + [q for q, _ in sums]
    params = SamplingParams(max_tokens=24, temperature=0.0)

    base = LLM(_stage(args.run, "pretrain") / "model", dtype="float32")
    corpus_layout = [f"Question: {q} Answer:" for q in asked]
    base_replies = [o.text for o in base.generate(corpus_layout, params)]
    del base
    sft = LLM(_stage(args.run, "merge") / "model", dtype="float32")
    sft_replies = [o.content for o in sft.chat([[{"role": "user", "content": q}] for q in asked], params)]
    sft_corpus_replies = [o.text for o in sft.generate(corpus_layout, params)]

    results = {
        "base, corpus layout": score(base_replies, facts, sums),
        "sft, chat": score(sft_replies, facts, sums),
        "sft, corpus layout": score(sft_corpus_replies, facts, sums),
    }
    print(f"{len(facts)} held-out fact questions, {len(sums)} sums\n")
    print("| model, layout | " + " | ".join(results["sft, chat"]) + " |")
    print("| --- |" + " ---: |" * len(results["sft, chat"]))
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in row.values()) + " |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
