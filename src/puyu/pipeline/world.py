"""The synthetic default world: people, places, jobs and belongings, generated from a seed.

Everything the quickstart trains and evaluates on is derived from one `World`: the pretraining corpus
states its facts, the SFT data asks about some of its people, and the held-out evaluation asks about the
others. Names are built from generated syllables, each with an English spelling and a Chinese
transliteration (one character per syllable), so the world is bilingual without any copied text.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from puyu.errors import PuyuError
from puyu.io import atomic_write_text

# Syllable parts and the Chinese character each syllable maps to (chosen from characters commonly used
# to transliterate foreign names). Onset x nucleus gives the syllable inventory.
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
_NUCLEI = ("a", "e", "i", "o", "u")
_CHARS = (
    "巴贝比波布达德迪多杜法菲费佛夫加格吉戈古卡克基科库拉勒利洛卢马梅米莫穆纳内尼诺努帕佩皮珀普拉雷里罗鲁"
    "萨塞西索苏塔泰提托图瓦维薇沃武扎泽齐佐祖"
)
_CODAS = ("", "", "", "n", "r", "l")
_CODA_CHARS = {"": "", "n": "恩", "r": "尔", "l": "尔"}

# (English, Chinese) pairs for the closed-class parts of the world.
JOBS: tuple[tuple[str, str], ...] = (
    ("teacher", "老师"),
    ("doctor", "医生"),
    ("farmer", "农民"),
    ("baker", "面包师"),
    ("engineer", "工程师"),
    ("painter", "画家"),
    ("pilot", "飞行员"),
    ("singer", "歌手"),
    ("writer", "作家"),
    ("nurse", "护士"),
    ("fisher", "渔民"),
    ("tailor", "裁缝"),
)
ITEMS: tuple[tuple[str, str, str], ...] = (  # singular, plural, Chinese
    ("book", "books", "书"),
    ("bicycle", "bicycles", "自行车"),
    ("cat", "cats", "猫"),
    ("lamp", "lamps", "灯"),
    ("chair", "chairs", "椅子"),
    ("boat", "boats", "船"),
    ("clock", "clocks", "钟"),
    ("drum", "drums", "鼓"),
)

SIZES = ("tiny", "default")


@dataclass(frozen=True)
class WorldSize:
    """How many of each thing a world holds."""

    countries: int
    cities: int
    people: int


WORLD_SIZES = {
    "tiny": WorldSize(countries=3, cities=6, people=24),
    "default": WorldSize(countries=5, cities=12, people=60),
}


@dataclass
class Name:
    """A name in both languages."""

    en: str
    zh: str


@dataclass
class Country:
    name: Name
    capital: int  # index into World.cities


@dataclass
class City:
    name: Name
    country: int
    population: int  # people


@dataclass
class ItemKind:
    singular: str
    plural: str
    zh: str
    price: int  # coins


@dataclass
class Person:
    given: Name
    family: Name
    birth_year: int
    city: int  # lives in
    birth_city: int
    job: int  # index into JOBS
    height_cm: int
    friend: int  # index into World.people
    item: int  # index into World.items
    item_count: int

    @property
    def name(self) -> Name:
        return Name(f"{self.given.en} {self.family.en}", f"{self.given.zh}·{self.family.zh}")


@dataclass
class World:
    """The whole world; `held_out` marks people whose facts only the evaluation asks about."""

    seed: int
    countries: list[Country]
    cities: list[City]
    items: list[ItemKind]
    people: list[Person]
    held_out: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> World:
        def person(p: dict[str, Any]) -> Person:
            return Person(**{**p, "given": Name(**p["given"]), "family": Name(**p["family"])})

        return cls(
            seed=data["seed"],
            countries=[Country(Name(**c["name"]), c["capital"]) for c in data["countries"]],
            cities=[City(Name(**c["name"]), c["country"], c["population"]) for c in data["cities"]],
            items=[ItemKind(**i) for i in data["items"]],
            people=[person(p) for p in data["people"]],
            held_out=list(data["held_out"]),
        )

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> World:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))

    # ---- facts derived from the stored ones -------------------------------------------------------

    def country_of(self, person: Person) -> Country:
        return self.countries[self.cities[person.city].country]

    def total_price(self, person: Person) -> int:
        return person.item_count * self.items[person.item].price

    def fresh_names(self, rng: random.Random) -> NameMaker:
        """A name maker that never repeats a name of this world's people."""
        names = NameMaker(rng)
        names.used.update(n for p in self.people for n in (p.given.en, p.given.zh, p.family.en, p.family.zh))
        return names

    def trained_people(self) -> list[int]:
        held = set(self.held_out)
        return [i for i in range(len(self.people)) if i not in held]


class NameMaker:
    """Unique bilingual names from random syllables."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def syllable(self) -> tuple[str, str]:
        onset, nucleus = self.rng.randrange(len(_ONSETS)), self.rng.randrange(len(_NUCLEI))
        coda = self.rng.choice(_CODAS)
        zh = _CHARS[(onset * len(_NUCLEI) + nucleus) % len(_CHARS)] + _CODA_CHARS[coda]
        return _ONSETS[onset] + _NUCLEI[nucleus] + coda, zh

    def make(self, syllables: tuple[int, int]) -> Name:
        for _ in range(1000):
            parts = [self.syllable() for _ in range(self.rng.randint(*syllables))]
            en = "".join(p[0] for p in parts).capitalize()
            zh = "".join(p[1] for p in parts)
            if en not in self.used and zh not in self.used:
                self.used.update((en, zh))
                return Name(en, zh)
        raise PuyuError("world: ran out of distinct names; use a smaller world")


def build_world(seed: int, size: str = "default", *, held_out_fraction: float = 0.2) -> World:
    """Generate a world deterministically from `seed`.

    Args:
        seed: random seed; the same seed and size always give the same world.
        size: "tiny" or "default" (see `WORLD_SIZES`).
        held_out_fraction: share of people kept out of the SFT data, for evaluation.
    """
    if size not in WORLD_SIZES:
        raise PuyuError(f"size {size!r}: choose from {', '.join(SIZES)}")
    spec = WORLD_SIZES[size]
    rng = random.Random(seed)
    names = NameMaker(rng)
    countries = [Country(names.make((2, 3)), capital=-1) for _ in range(spec.countries)]
    cities = []
    for i in range(spec.cities):
        country = i % spec.countries  # every country gets at least one city
        cities.append(City(names.make((2, 3)), country, population=rng.randrange(20, 990) * 1000))
    for c, country in enumerate(countries):
        country.capital = next(i for i, city in enumerate(cities) if city.country == c)
    items = [ItemKind(s, p, zh, price=rng.randint(2, 40)) for s, p, zh in ITEMS]
    people = []
    for _ in range(spec.people):
        people.append(
            Person(
                given=names.make((2, 2)),
                family=names.make((2, 3)),
                birth_year=rng.randint(1950, 2005),
                city=rng.randrange(spec.cities),
                birth_city=rng.randrange(spec.cities),
                job=rng.randrange(len(JOBS)),
                height_cm=rng.randint(150, 199),
                friend=-1,
                item=rng.randrange(len(items)),
                item_count=rng.randint(2, 9),
            )
        )
    for i, person in enumerate(people):
        person.friend = (i + rng.randrange(1, len(people))) % len(people)  # never oneself
    order = list(range(len(people)))
    rng.shuffle(order)
    held_out = sorted(order[: max(1, round(held_out_fraction * len(people)))])
    return World(seed, countries, cities, items, people, held_out)
