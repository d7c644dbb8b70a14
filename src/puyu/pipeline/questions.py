"""Questions about the world, with phrasings split between SFT (taught) and evaluation (held out).

Each relation has English and Chinese question templates; the first ones are used by the SFT data, the
rest only by the evaluation sets, so the evaluation measures retrieval under new wording. `{n}` is the
person's name.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from puyu.pipeline.world import JOBS, Person, World


@dataclass(frozen=True)
class Relation:
    """One kind of question about a person."""

    name: str
    en_train: tuple[str, ...]
    en_eval: tuple[str, ...]
    zh_train: tuple[str, ...]
    zh_eval: tuple[str, ...]
    value: Callable[[World, Person, str], str]  # the short answer, per language
    sentence: Callable[[World, Person, str], str]  # a full-sentence answer, per language
    choices: Callable[[World, str], list[str]]  # every possible value (for multiple-choice distractors)


def _city(world: World, p: Person, lang: str) -> str:
    return getattr(world.cities[p.city].name, lang)


def _job(world: World, p: Person, lang: str) -> str:
    return JOBS[p.job][0 if lang == "en" else 1]


def _friend(world: World, p: Person, lang: str) -> str:
    return getattr(world.people[p.friend].name, lang)


def _country(world: World, p: Person, lang: str) -> str:
    return getattr(world.country_of(p).name, lang)


def _article(job: str) -> str:
    return "an" if job[0] in "aeiou" else "a"


RELATIONS: tuple[Relation, ...] = (
    Relation(
        "city",
        ("Where does {n} live?", "Which city does {n} live in?", "What city is {n} a resident of?"),
        ("In which city is the home of {n}?", "Tell me the city where {n} lives."),
        ("{n}住在哪里？", "{n}住在哪个城市？"),
        ("{n}的家在哪个城市？",),
        _city,
        lambda w, p, lang: (
            f"{p.name.en} lives in {_city(w, p, lang)}." if lang == "en" else f"{p.name.zh}住在{_city(w, p, lang)}。"
        ),
        lambda w, lang: [getattr(c.name, lang) for c in w.cities],
    ),
    Relation(
        "job",
        ("What does {n} do for a living?", "What is the job of {n}?", "What is {n}'s profession?"),
        ("What work does {n} do?", "Tell me the occupation of {n}."),
        ("{n}做什么工作？", "{n}的职业是什么？"),
        ("{n}从事什么职业？",),
        _job,
        lambda w, p, lang: (
            f"{p.name.en} works as {_article(_job(w, p, lang))} {_job(w, p, lang)}."
            if lang == "en"
            else f"{p.name.zh}是一名{_job(w, p, lang)}。"
        ),
        lambda w, lang: [j[0 if lang == "en" else 1] for j in JOBS],
    ),
    Relation(
        "birth_year",
        ("When was {n} born?", "In what year was {n} born?"),
        ("What is the birth year of {n}?", "Which year is {n} born in?"),
        ("{n}是哪一年出生的？",),
        ("{n}出生于哪一年？",),
        lambda w, p, lang: str(p.birth_year),
        lambda w, p, lang: (
            f"{p.name.en} was born in {p.birth_year}." if lang == "en" else f"{p.name.zh}出生于{p.birth_year}年。"
        ),
        lambda w, lang: [str(y) for y in range(1950, 2006)],
    ),
    Relation(
        "friend",
        ("Who is the friend of {n}?", "Who is {n}'s best friend?"),
        ("Name the friend of {n}.", "Which person is a friend of {n}?"),
        ("{n}最好的朋友是谁？",),
        ("{n}的朋友是谁？",),
        _friend,
        lambda w, p, lang: (
            f"The best friend of {p.name.en} is {_friend(w, p, lang)}."
            if lang == "en"
            else f"{p.name.zh}最好的朋友是{_friend(w, p, lang)}。"
        ),
        lambda w, lang: [getattr(q.name, lang) for q in w.people],
    ),
    Relation(
        "country",
        ("Which country does {n} live in?", "In what country does {n} live?"),
        ("What is the country of residence of {n}?",),
        ("{n}住在哪个国家？",),
        ("{n}生活在哪个国家？",),
        _country,
        lambda w, p, lang: (
            f"{p.name.en} lives in {_country(w, p, lang)}."
            if lang == "en"
            else f"{p.name.zh}住在{_country(w, p, lang)}。"
        ),
        lambda w, lang: [getattr(c.name, lang) for c in w.countries],
    ),
    Relation(
        "height",
        ("How tall is {n}?", "What is the height of {n}?"),
        ("How many centimeters tall is {n}?",),
        ("{n}有多高？",),
        ("{n}的身高是多少？",),
        lambda w, p, lang: str(p.height_cm),
        lambda w, p, lang: (
            f"{p.name.en} is {p.height_cm} centimeters tall." if lang == "en" else f"{p.name.zh}身高{p.height_cm}厘米。"
        ),
        lambda w, lang: [str(h) for h in range(150, 200)],
    ),
)

EVAL_RELATIONS = ("city", "job", "friend", "country", "birth_year")  # short answers a tiny model can retrieve


def ask(relation: Relation, world: World, person: Person, lang: str, split: str, rng: random.Random) -> str:
    """A question about `person` in `lang`, with a phrasing from the "train" or "eval" split."""
    options = getattr(relation, f"{lang}_{split}")
    return rng.choice(options).format(n=getattr(person.name, lang))


def relation(name: str) -> Relation:
    return next(r for r in RELATIONS if r.name == name)
