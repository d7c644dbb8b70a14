"""A knowledge base of the quickstart world: one Markdown page per person, and labelled questions.

Good questions ask about a person of the world (the gold source is their page, the gold answer their job or
city); bad ones are either off-topic chat or the same questions about people who do not exist in the world
(names made by the world's own name maker), which only a gate that looks past word overlap can refuse.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from puyu.pipeline.world import JOBS, World

OFF_TOPIC = (
    "What is the capital of Australia?", "Recommend a good pasta recipe.", "How do I center a div in CSS?",
    "Who won the football world cup in 2018?", "Tell me a joke about cats.", "What is the speed of light?",
    "How do I install Docker on Ubuntu?", "What time is it in Tokyo?", "今天天气怎么样？", "推荐一部好看的电影",
)  # fmt: skip


def person_page(world: World, index: int) -> str:
    person = world.people[index]
    name, city = person.name, world.cities[person.city]
    job, friend = JOBS[person.job][0], world.people[person.friend].name
    item = world.items[person.item]
    return (
        f"# {name.en} ({name.zh})\n\n"
        f"{name.en} is a {job} who lives in {city.name.en}, {world.country_of(person).name.en}. "
        f"{name.en} was born in {person.birth_year} in {world.cities[person.birth_city].name.en} "
        f"and is {person.height_cm} cm tall.\n\n"
        f"{name.en} owns {person.item_count} {item.plural}. {name.en}'s friend is {friend.en}.\n"
    )


def write_world_documents(world: World, folder: Path) -> list[Path]:
    """One page per person, `person-NNN.md`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(len(world.people)):
        path = folder / f"person-{index:03d}.md"
        path.write_text(person_page(world, index), encoding="utf-8")
        paths.append(path)
    return paths


def world_questions(world: World, seed: int = 0) -> list[dict[str, Any]]:
    """Labelled questions: two per person (job, city), and as many bad ones (off-topic and unknown people)."""
    rng = random.Random(seed)
    good = []
    for index, person in enumerate(world.people):
        source = [f"person-{index:03d}.md"]
        good.append({"question": f"What job does {person.name.en} have?", "answerable": True, "sources": source,
                     "answer": JOBS[person.job][0]})  # fmt: skip
        good.append({"question": f"Which city does {person.name.en} live in?", "answerable": True,
                     "sources": source, "answer": world.cities[person.city].name.en})  # fmt: skip
    names = world.fresh_names(rng)
    bad = [{"question": q, "answerable": False, "sources": [], "answer": None} for q in OFF_TOPIC]
    while len(bad) < len(good):
        stranger = f"{names.make((2, 2)).en} {names.make((2, 3)).en}"
        template = rng.choice(("What job does {} have?", "Which city does {} live in?"))
        bad.append({"question": template.format(stranger), "answerable": False, "sources": [], "answer": None})
    return good + bad


def write_world_questions(world: World, path: Path, seed: int = 0) -> None:
    path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in world_questions(world, seed)))
