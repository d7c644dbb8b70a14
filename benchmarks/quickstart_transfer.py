"""Where do the quickstart's instruction skills get lost? The base model in its corpus's layout against the
SFT model in the chat layout, on the same held-out questions.

For a finished `puyu quickstart` run this asks, greedily:

* base, corpus layout: `Question: {q} Answer:` (the Q&A pages and sum drills of the pretraining corpus);
* SFT, chat layout: `{q}` as a user turn (what `puyu eval` asks);
* SFT, corpus layout: what fine-tuning left of the base's skills in the base's own layout.

Questions: every held-out person and English relation of `world_facts_qa` (correct when the reply contains
the answer, and, separately, when it also names the person asked about), and one-digit sums `What is a plus
b?` over all 100 pairs (correct when the reply holds `a + b = c`); and copying: 40 fresh 7-digit numbers,
said back after `The code is N. Enter` (the corpus's copying lines) or `Please say N.` (chat). A skill the
base shows in its own layout and the SFT model lacks in chat was lost in fine-tuning, not missing from
pretraining; the last row tells whether it was overwritten (gone in both layouts) or only not carried into
the chat layout.

A second table asks where the SFT model adds: the eval's wording `How much is a plus b?` as a user turn, the
assistant's reply begun for it with the operands, bare (`a + b =`) or after the lead-in its sum answers
are trained to start with (`Here is the sum: a + b =`); correct when the next number is the sum.

    .venv/bin/python benchmarks/quickstart_transfer.py runs/quickstart
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from puyu.engine.llm import LLM
from puyu.generation.sampling import SamplingParams
from puyu.pipeline.questions import EVAL_RELATIONS, relation
from puyu.pipeline.sft import SUM_LEAD
from puyu.pipeline.stages import read_summary
from puyu.pipeline.world import World

PAIRS = [(a, b) for a in range(10) for b in range(10)]  # every one-digit sum, asked in both tables


def _output(run: Path, stage: str, output: str) -> Path:
    """An output of the run's current `stage`, as its `pipeline.json` records it."""
    stages = read_summary(run)
    if stage not in stages:
        raise SystemExit(f"{run}: no finished {stage} stage (run `puyu quickstart --out {run}` first)")
    return stages[stage].output(output)


def questions(world: World) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(question, answer, person's name) about held-out people, and (question, expected equation) sums."""
    facts = []
    for index in world.held_out:
        person = world.people[index]
        for name in EVAL_RELATIONS:
            rel = relation(name)
            facts.append((rel.en_train[0].format(n=person.name.en), rel.value(world, person, "en"), person.name.en))
    sums = [(f"What is {a} plus {b}?", f"{a} + {b} = {a + b}") for a, b in PAIRS]
    return facts, sums


def score(
    replies: list[str], facts: list[tuple[str, str, str]], sums: list[tuple[str, str]], codes: list[str]
) -> dict[str, float]:
    fact_replies = replies[: len(facts)]
    sum_replies = replies[len(facts) : len(facts) + len(sums)]
    code_replies = replies[len(facts) + len(sums) :]
    found = [answer in reply for reply, (_, answer, _) in zip(fact_replies, facts, strict=True)]
    named = [ok and person in reply for ok, reply, (_, _, person) in zip(found, fact_replies, facts, strict=True)]
    added = [equation in reply for reply, (_, equation) in zip(sum_replies, sums, strict=True)]
    copied = [code in reply for reply, code in zip(code_replies, codes, strict=True)]
    return {
        "facts: answer": 100 * sum(found) / len(found),
        "facts: answer and name": 100 * sum(named) / len(named),
        "one-digit sums": 100 * sum(added) / len(added),
        "copying": 100 * sum(copied) / len(copied),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a quickstart output folder")
    args = parser.parse_args()
    world = World.load(_output(args.run, "world", "world"))
    facts, sums = questions(world)
    rng = random.Random(0)
    codes = [str(rng.randrange(10**6, 10**7)) for _ in range(40)]
    asked = [q for q, _, _ in facts] + [q for q, _ in sums]
    corpus_layout = [f"Question: {q} Answer:" for q in asked] + [f"The code is {n}. Enter" for n in codes]
    chat_layout = [[{"role": "user", "content": q}] for q in asked + [f"Please say {n}." for n in codes]]
    params = SamplingParams(max_tokens=24, temperature=0.0)

    base = LLM(_output(args.run, "pretrain", "model"), dtype="float32")
    base_replies = [o.text for o in base.generate(corpus_layout, params)]
    del base
    sft = LLM(_output(args.run, "merge", "model"), dtype="float32")
    sft_replies = [o.content for o in sft.chat(chat_layout, params)]
    sft_corpus_replies = [o.text for o in sft.generate(corpus_layout, params)]

    addition = {f"after `{lead}a + b =`": _sums_after(sft, PAIRS, lead) for lead in ("", SUM_LEAD)}
    results = {
        "base, corpus layout": score(base_replies, facts, sums, codes),
        "sft, chat": score(sft_replies, facts, sums, codes),
        "sft, corpus layout": score(sft_corpus_replies, facts, sums, codes),
    }
    print(f"{len(facts)} held-out fact questions, {len(sums)} sums, {len(codes)} numbers to copy\n")
    print("| model, layout | " + " | ".join(results["sft, chat"]) + " |")
    print("| --- |" + " ---: |" * len(results["sft, chat"]))
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in row.values()) + " |")
    print("\n| SFT, chat, reply begun with the operands | one-digit sums |\n| --- | ---: |")
    for name, value in addition.items():
        print(f"| {name} | {value:.1f} |")
    print(json.dumps({**results, "addition": addition}))


def _sums_after(llm: LLM, pairs: list[tuple[int, int]], lead: str) -> float:
    """Percent of `pairs` whose sum comes next after the chat question and `{lead}a + b =` as the reply's start."""
    prompts = [
        llm.engine.chat_prompt_ids([{"role": "user", "content": f"How much is {a} plus {b}?"}])
        + llm.tokenizer.encode(f"{lead}{a} + {b} =", add_special_tokens=False)
        for a, b in pairs
    ]
    replies = llm.generate(prompts, SamplingParams(max_tokens=3, temperature=0.0))
    numbers = [re.match(r"\s*(\d+)", reply.text) for reply in replies]
    right = [bool(n) and n.group(1) == str(a + b) for n, (a, b) in zip(numbers, pairs, strict=True)]
    return 100 * sum(right) / len(right)


if __name__ == "__main__":
    main()
