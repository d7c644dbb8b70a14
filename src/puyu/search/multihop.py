"""A multi-hop question set over the quickstart world, whose facts sit in different documents.

`write_documents` writes one short document per person (where they live and were born, their job, their
friend), per city (its country) and per country (its capital) — so that no single document answers a
multi-hop question. `multihop_questions` asks 2-hop questions (the friend's job; the country of the home
city) and 3-hop ones (the country the friend lives in; the capital of the birth country), each with its
answer and the documents that hold its facts.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from puyu.io import atomic_write_text
from puyu.pipeline.world import JOBS, World


@dataclass
class MultiHopQuestion:
    question: str
    answer: str
    hops: int
    documents: list[str]  # the file names holding its facts, in hop order

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def person_file(world: World, index: int) -> str:
    return f"person-{_slug(world.people[index].name.en)}.md"


def city_file(world: World, index: int) -> str:
    return f"city-{_slug(world.cities[index].name.en)}.md"


def country_file(world: World, index: int) -> str:
    return f"country-{_slug(world.countries[index].name.en)}.md"


def write_documents(world: World, folder: str | Path) -> list[Path]:
    """One document per person, city and country under `folder` (English); returns the paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, p in enumerate(world.people):
        name, job = p.name.en, JOBS[p.job][0]
        text = (
            f"# {name}\n\n{name} lives in {world.cities[p.city].name.en}. "
            f"{name} was born in {world.cities[p.birth_city].name.en}. "
            f"{name} works as a {job}. The best friend of {name} is {world.people[p.friend].name.en}.\n"
        )
        written.append(out / person_file(world, i))
        atomic_write_text(written[-1], text)
    for i, c in enumerate(world.cities):
        country = world.countries[c.country].name.en
        text = f"# {c.name.en}\n\n{c.name.en} is a city in the country of {country}.\n"
        written.append(out / city_file(world, i))
        atomic_write_text(written[-1], text)
    for i, c in enumerate(world.countries):
        text = f"# {c.name.en}\n\n{c.name.en} is a country. Its capital city is {world.cities[c.capital].name.en}.\n"
        written.append(out / country_file(world, i))
        atomic_write_text(written[-1], text)
    return written


def multihop_questions(world: World, count: int, seed: int = 0) -> list[MultiHopQuestion]:
    """`count` questions, the four kinds in turn, about people drawn with `seed` (2-hop and 3-hop alternate)."""
    rng = random.Random(seed)
    questions: list[MultiHopQuestion] = []
    people = list(range(len(world.people)))
    rng.shuffle(people)
    for n in range(count):
        i = people[n % len(people)]
        p = world.people[i]
        name = p.name.en
        friend = world.people[p.friend]
        kind = n % 4
        if kind == 0:
            questions.append(
                MultiHopQuestion(
                    f"What is the job of the best friend of {name}?",
                    JOBS[friend.job][0],
                    2,
                    [person_file(world, i), person_file(world, p.friend)],
                )
            )
        elif kind == 1:
            city = world.cities[p.city]
            questions.append(
                MultiHopQuestion(
                    f"In which country is the city where {name} lives?",
                    world.countries[city.country].name.en,
                    2,
                    [person_file(world, i), city_file(world, p.city)],
                )
            )
        elif kind == 2:
            city = world.cities[friend.city]
            questions.append(
                MultiHopQuestion(
                    f"In which country does the best friend of {name} live?",
                    world.countries[city.country].name.en,
                    3,
                    [person_file(world, i), person_file(world, p.friend), city_file(world, friend.city)],
                )
            )
        else:
            born = world.cities[p.birth_city]
            country = world.countries[born.country]
            questions.append(
                MultiHopQuestion(
                    f"What is the capital of the country where {name} was born?",
                    world.cities[country.capital].name.en,
                    3,
                    [person_file(world, i), city_file(world, p.birth_city), country_file(world, born.country)],
                )
            )
    return questions


def is_correct(prediction: str, answer: str) -> bool:
    """The answer appears in the prediction as whole words (case-insensitive)."""
    return re.search(rf"(?<!\w){re.escape(answer.lower())}(?!\w)", prediction.lower()) is not None
