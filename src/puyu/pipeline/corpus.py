"""The pretraining corpus: simple English and Chinese documents stating the world's facts, plus arithmetic.

Each person gets several biographies, each with the facts in a fresh order and each fact in one of several
paraphrases, because a model only learns to retrieve a fact in new contexts when it has seen it stated
in varied ways. Held-out people are only described: Q&A pages exist for the trained people alone. Copying
lines and addition tables give the skills the instruction tasks rest on (copying operands and names,
one-digit sums) plain-text practice: a LoRA adapter builds little of a skill the base model lacks. A few noisy
documents (exact copies, spam) are mixed in so the data stage has something to remove.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from puyu.io import atomic_path
from puyu.pipeline.calculator import OPERATOR_WORDS, random_pair
from puyu.pipeline.questions import RELATIONS, ask
from puyu.pipeline.world import JOBS, NameMaker, Person, World


@dataclass(frozen=True)
class CorpusSize:
    """Documents per person and arithmetic documents."""

    bios_en: int
    bios_zh: int
    qa_docs: int  # question-and-answer documents per person
    arithmetic_docs: int
    calculator_docs: int
    copy_docs: int
    table_docs: int  # one-digit addition tables (at most 60: 6 wordings x 10 first addends)
    drill_docs: int  # one-digit sums whose answers appear nowhere earlier in the line
    dialogue_docs: int  # chat transcripts in which the assistant says back what the user gave
    noise_docs: int


CORPUS_SIZES = {
    "tiny": CorpusSize(
        bios_en=2,
        bios_zh=1,
        qa_docs=1,
        arithmetic_docs=20,
        calculator_docs=10,
        copy_docs=10,
        table_docs=10,
        drill_docs=10,
        dialogue_docs=10,
        noise_docs=4,
    ),
    "default": CorpusSize(
        bios_en=12,
        bios_zh=4,
        qa_docs=3,
        arithmetic_docs=300,
        calculator_docs=200,
        copy_docs=400,
        table_docs=60,
        drill_docs=200,
        dialogue_docs=200,
        noise_docs=20,
    ),
}


def _en_facts(world: World, p: Person) -> list[list[str]]:
    """Per fact, its English paraphrases (each a full sentence naming the person)."""
    n = p.name.en
    city, born = world.cities[p.city].name.en, world.cities[p.birth_city].name.en
    country = world.country_of(p).name.en
    job = JOBS[p.job][0]
    article = "an" if job[0] in "aeiou" else "a"
    friend = world.people[p.friend].name.en
    item = world.items[p.item]
    things = f"{p.item_count} {item.plural}"
    return [
        [
            f"{n} lives in {city}.",
            f"{n} has a home in {city}.",
            f"The city where {n} lives is {city}.",
            f"Where does {n} live? {n} lives in {city}.",
            f"{n} is a resident of {city}.",
        ],
        [
            f"{n} works as {article} {job}.",
            f"{n} is {article} {job}.",
            f"By profession, {n} is {article} {job}.",
            f"What does {n} do for a living? {n} works as {article} {job}.",
            f"The job of {n} is {job}.",
        ],
        [
            f"{n} was born in {p.birth_year}.",
            f"{n} was born in the year {p.birth_year}.",
            f"The birth year of {n} is {p.birth_year}.",
            f"When was {n} born? {n} was born in {p.birth_year}.",
        ],
        [
            f"{n} was born in the city of {born}.",
            f"The birthplace of {n} is {born}.",
            f"{n} comes from {born}, the city where {n} was born.",
        ],
        [
            f"{n} is {p.height_cm} centimeters tall.",
            f"The height of {n} is {p.height_cm} cm.",
            f"How tall is {n}? {n} is {p.height_cm} centimeters tall.",
        ],
        [
            f"{n} is a friend of {friend}.",
            f"The best friend of {n} is {friend}.",
            f"{n} and {friend} are good friends.",
            f"Who is the friend of {n}? It is {friend}.",
        ],
        [f"{n} owns {things}.", f"{n} has {things} at home.", f"How many {item.plural} does {n} own? {things}."],
        [
            f"{n} lives in the country of {country}.",
            f"Since {city} is in {country}, {n} lives in {country}.",
            f"The country where {n} lives is {country}.",
        ],
        [
            f"Each {item.singular} costs {item.price} coins, so the {things} of {n} are worth "
            f"{world.total_price(p)} coins."
        ],
    ]


def _zh_facts(world: World, p: Person) -> list[list[str]]:
    """Per fact, its Chinese paraphrases."""
    n = p.name.zh
    city, born = world.cities[p.city].name.zh, world.cities[p.birth_city].name.zh
    country = world.country_of(p).name.zh
    job = JOBS[p.job][1]
    friend = world.people[p.friend].name.zh
    item = world.items[p.item]
    return [
        [f"{n}住在{city}。", f"{n}的家在{city}。", f"{n}住在哪里？{n}住在{city}。"],
        [f"{n}是一名{job}。", f"{n}的职业是{job}。", f"{n}做什么工作？{n}是{job}。"],
        [f"{n}出生于{p.birth_year}年。", f"{n}是{p.birth_year}年出生的。"],
        [f"{n}出生在{born}。", f"{n}的出生地是{born}。"],
        [f"{n}身高{p.height_cm}厘米。", f"{n}的身高是{p.height_cm}厘米。"],
        [f"{n}是{friend}的朋友。", f"{n}最好的朋友是{friend}。"],
        [f"{n}有{p.item_count}个{item.zh}。", f"{n}家里有{p.item_count}个{item.zh}。"],
        [f"{n}住在{country}。", f"{n}生活的国家是{country}。"],
    ]


def biography(world: World, person: Person, rng: random.Random, language: str) -> str:
    """One document with every fact about `person`, in random order and wording."""
    facts = _en_facts(world, person) if language == "en" else _zh_facts(world, person)
    rng.shuffle(facts)
    sentences = [rng.choice(options) for options in facts]
    return ("" if language == "zh" else " ").join(sentences)


def qa_document(world: World, person: Person, rng: random.Random) -> str:
    """Questions about `person` (SFT phrasings) each followed by its answer, as in an FAQ page.

    Seeing facts asked and answered during pretraining is what lets a model answer questions about
    people whose facts it only read in biographies.
    """
    lang = "en" if rng.random() < 0.7 else "zh"
    relations = list(RELATIONS)
    rng.shuffle(relations)
    pairs = [(ask(rel, world, person, lang, "train", rng), rel.sentence(world, person, lang)) for rel in relations]
    if lang == "zh":
        return "".join(f"问：{q}答：{a}" for q, a in pairs)
    return " ".join(f"Question: {q} Answer: {a}" for q, a in pairs)


def place_documents(world: World) -> list[str]:
    """Documents about countries, cities and prices, English and Chinese."""
    docs = []
    for country in world.countries:
        cities = [c for c in world.cities if world.countries[c.country] is country]
        capital = world.cities[country.capital]
        en = [f"{country.name.en} is a country. The capital of {country.name.en} is {capital.name.en}."]
        zh = [f"{country.name.zh}是一个国家。{country.name.zh}的首都是{capital.name.zh}。"]
        for c in cities:
            en.append(f"{c.name.en} is a city in {country.name.en}. About {c.population} people live in {c.name.en}.")
            zh.append(f"{c.name.zh}是{country.name.zh}的一个城市，大约有{c.population}人住在{c.name.zh}。")
        docs += [" ".join(en), "".join(zh)]
    price_lines = [f"In this world, one {i.singular} costs {i.price} coins." for i in world.items]
    price_lines += [f"一个{i.zh}的价格是{i.price}个金币。" for i in world.items]
    docs.append(" ".join(price_lines))
    return docs


def arithmetic_line(rng: random.Random) -> str:
    """One arithmetic statement: an equation or a short word problem with its answer."""
    kind = rng.randrange(6)
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    if kind == 0:
        return f"{a} + {b} = {a + b}."
    if kind == 1:
        a, b = max(a, b), min(a, b)
        return f"{a} - {b} = {a - b}."
    if kind == 2:
        a, b = rng.randint(0, 12), rng.randint(0, 12)
        return f"{a} * {b} = {a * b}."
    if kind == 3:
        return f"{a} plus {b} equals {a + b}."
    if kind == 4:
        return f"If you have {a} apples and get {b} more, you have {a + b} apples."
    a, b = rng.randint(10, 99), rng.randint(2, 99)
    return f"For a large product such as {a} * {b}, a calculator gives {a * b}."


def small_sum_line(rng: random.Random) -> str:
    """A one-digit sum asked in words and answered as an equation."""
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    question = rng.choice(
        ("What is {a} plus {b}?", "Add {a} and {b}.", "{a} plus {b} is how much?", "Sum {a} and {b}.")
    )
    return f"Question: {question.format(a=a, b=b)} Answer: {a} + {b} = {a + b}."


def arithmetic_document(rng: random.Random, lines: int = 12) -> str:
    return " ".join(small_sum_line(rng) if i % 3 == 0 else arithmetic_line(rng) for i in range(lines))


# Ways of stating a one-digit sum: the tables use each with each first addend once, so no two table
# documents are near-duplicates (the data stage would drop all but one of a shuffled repeat).
SUM_FORMS = (
    "When we add {a} and {b}, the answer is {c}. {a} + {b} = {c}.",
    "If you add {b} to {a}, you get {c}: {a} + {b} = {c}.",
    "{a} plus {b} makes {c}, which we write as {a} + {b} = {c}.",
    "Adding {b} to {a} gives {c}. So {a} + {b} = {c}.",
    "The sum of {a} and {b} is {c}, that is {a} + {b} = {c}.",
    "Take {a} and add {b}: the result is {c}. {a} + {b} = {c}.",
)


def sum_table_documents(rng: random.Random) -> list[str]:
    """The one-digit addition table, one document per first addend and way of stating it, in shuffled order."""
    docs = []
    for form in SUM_FORMS:
        for a in range(10):
            addends = list(range(10))
            rng.shuffle(addends)
            docs.append(" ".join(form.format(a=a, b=b, c=a + b) for b in addends))
    rng.shuffle(docs)
    return docs


# Sum statements whose answer is not stated earlier in the line: the table documents also repeat each
# answer, which a small model learns to copy instead of recalling.
DRILL_FORMS = (
    "{a} + {b} = {c}.",
    "{a} plus {b} is {c}.",
    "What is {a} plus {b}? {a} + {b} = {c}.",
    "Add {a} and {b}: {a} + {b} = {c}.",
)


def sum_drill_document(rng: random.Random, lines: int = 24) -> str:
    """Practice sums in random order: recalling the one-digit addition table, the skill small sums test."""
    sums = []
    for _ in range(lines):
        a, b = rng.randrange(10), rng.randrange(10)
        sums.append(rng.choice(DRILL_FORMS).format(a=a, b=b, c=a + b))
    return "Here are some sums and the answer to each of them. " + " ".join(sums)


def calculator_line(rng: random.Random) -> str:
    """A request in words next to the calculator call it needs: copying numbers into an expression.

    One fixed layout on purpose: at this model size and budget, varying the wording and the distance
    between request and call (filler sentences) left the pretrained model copying no operand at all,
    while the fixed layout reached 38 of 60 in that layout.
    """
    a, op, b = random_pair(rng)
    request = rng.choice((f"{a} {OPERATOR_WORDS[op]} {b}", f"{a} {op} {b}"))
    call = json.dumps({"name": "calculator", "parameters": {"expression": f"{a} {op} {b}"}})
    return f"To work out {request}, call the calculator: {call}"


def calculator_document(rng: random.Random, lines: int = 8) -> str:
    return "\n".join(calculator_line(rng) for _ in range(lines))


def _digits(rng: random.Random) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(rng.randint(3, 8)))


def copy_line(rng: random.Random, names: NameMaker) -> str:
    """A short sentence that repeats a fresh digit string, expression or name: text only copying predicts.

    Digits and names drawn fresh for every line cannot be memorised, so the loss on their second
    mention falls only once the model copies from context, the skill calculator calls rest on. Lines
    are short and the copies contiguous, the form in which a small model learns copying fastest.
    """
    kind = rng.randrange(5)
    if kind == 0:
        code = _digits(rng)
        return f"The code is {code}. Enter {code}."
    if kind == 1:
        name = f"{names.make((2, 2)).en} {names.make((2, 3)).en}"
        return f"Ticket {_digits(rng)} belongs to {name}. The owner is {name}."
    a, op, b = random_pair(rng)
    if kind == 2:
        return f"Say {a} {op} {b}: {a} {op} {b}."
    if kind == 3:
        return f"Write {a} {OPERATOR_WORDS[op]} {b} as an expression: {a} {op} {b}."
    return f'The request "{a} {op} {b}" becomes {json.dumps({"expression": f"{a} {op} {b}"})}.'


def copy_document(rng: random.Random, lines: int = 10) -> str:
    names = NameMaker(rng)
    return "\n".join(copy_line(rng, names) for _ in range(lines))


def dialogue_document(rng: random.Random, names: NameMaker, exchanges: int = 6) -> str:
    """A chat transcript in the InternLM2 format, its special tokens written out, where the assistant says back
    the digits, names and expressions the user gives.

    Web text holds chat transcripts too; these teach the chat layout and copying across turns, never a fact or
    a sum (those are what fine-tuning is measured on).
    """
    from puyu.chat import ChatTemplate
    from puyu.pipeline.sft import echo_conversation

    messages = [{"role": "system", "content": "You are an assistant that says back exactly what the user gives you."}]
    messages += [m for _ in range(exchanges) for m in echo_conversation(rng, names, set())["messages"]]
    text = ChatTemplate.builtin("internlm2").render(messages).text
    return text.removeprefix("<s>")  # the tokenizer adds BOS to every document


def noise_documents(rng: random.Random, docs: list[str], count: int) -> list[str]:
    """Exact copies of real documents and spam that the data stage's dedup and filters remove."""
    out = []
    for i in range(count):
        if i % 2 == 0 and docs:
            out.append(rng.choice(docs))
        else:
            out.append("CLICK HERE!!! ### ### win win win $$$ " * rng.randint(1, 4))
    return out


def write_corpus(world: World, out_dir: str | Path, size: str, seed: int) -> dict[str, int]:
    """Write the corpus as JSONL files (`{"id", "text"}` per document) under `out_dir`.

    Returns:
        Documents per file.
    """
    spec = CORPUS_SIZES[size]
    rng = random.Random(f"corpus-{seed}")
    people_en = [biography(world, p, rng, "en") for p in world.people for _ in range(spec.bios_en)]
    people_zh = [biography(world, p, rng, "zh") for p in world.people for _ in range(spec.bios_zh)]
    dialogue_names = world.fresh_names(rng)
    files = {
        "people_en": people_en,
        "people_zh": people_zh,
        # Held-out people are only described, never asked about: their questions are the evaluation's.
        "people_qa": [
            qa_document(world, world.people[i], rng) for i in world.trained_people() for _ in range(spec.qa_docs)
        ],
        "places": place_documents(world),
        "arithmetic": [arithmetic_document(rng) for _ in range(spec.arithmetic_docs)],
        "sum_tables": sum_table_documents(rng)[: spec.table_docs],
        "sum_drills": [sum_drill_document(rng) for _ in range(spec.drill_docs)],
        "calculator": [calculator_document(rng) for _ in range(spec.calculator_docs)],
        "copying": [copy_document(rng) for _ in range(spec.copy_docs)],
        "dialogues": [dialogue_document(rng, dialogue_names) for _ in range(spec.dialogue_docs)],
        "web_noise": noise_documents(rng, people_en, spec.noise_docs),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, docs in files.items():
        with atomic_path(out / f"{name}.jsonl") as tmp, tmp.open("w", encoding="utf-8") as handle:
            for i, text in enumerate(docs):
                handle.write(json.dumps({"id": f"{name}-{i:06d}", "text": text}, ensure_ascii=False) + "\n")
        counts[name] = len(docs)
    return counts
