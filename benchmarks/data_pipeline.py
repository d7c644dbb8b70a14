"""Data pipeline benchmark: each stage of `puyu data prepare` alone, then the whole run on 2 workers.

The corpus (`--size-mb` of text, built once under `--workdir` and reused while its stamp matches), from
`--data` (the shared reference data: tinyshakespeare's input.txt and the CMMLU questions):

- Shakespeare: the speeches of input.txt grouped into documents of a few paragraphs (1.1 MB);
- generated English: an order-2 word Markov chain over input.txt, documents of log-normal length
  (median ~400 words), most of the corpus;
- generated Chinese: CMMLU questions, each with its answer, joined into paragraphs and documents (~14%);
- near-duplicates (~10%): copies of those documents with word (Chinese: character) swaps, deletions and
  insertions at rates of 1-20% of the units; exact copies (~3%): verbatim, re-spaced, upper-cased, or
  with a boilerplate line added, all equal after cleaning and key normalisation;
- spam (~5%): repeated promotion lines, keyword lists, hashtag runs, teaser lines ending in "...",
  bullet lists, blocklisted terms, Chinese lottery spam;
- decorations on the documents above: personal data (e-mails, phones, public IP addresses) in ~5%,
  boilerplate lines (share buttons, cookie banners, navigation bars, Chinese counterparts) in ~8%,
  HTML entities and decomposed accents in ~2%;
- written as shuffled JSONL shards, plus a few .txt files and .html pages (so those readers run too).

Measured:

(a) stages, each alone in this one process (one core) over the same documents, in pipeline order: read
    (JSONL parse; the txt and html readers on their files), clean, the default filter chain (plus a
    per-filter breakdown on a `--filter-sample-mb` sample, every filter on every sample document), PII
    scrubbing, the work-file JSON encoding, exact keys, MinHash signatures with LSH band keys, the global
    LSH clustering (with exact-key matching), and tokenization of the surviving documents with the
    byte-level tokenizer (`byte_level_tokenizer("internlm2")`) and a BPE trained by `train_bpe` on a
    `--bpe-slice-mb` slice of the corpus. As in `prepare`, stages after the filters see the documents
    the filters keep, and tokenization the deduplicated survivors; tokenization runs in a fresh process
    of its own (as prepare's tokenize workers are fresh processes): in the long-lived benchmark process,
    whose heap is fragmented by the texts of the earlier stages, the tokenizer's allocations made it ~25%
    slower. MB/s is MB of the stage's input per
    second of wall time (and per second of CPU time, which other work on a shared machine disturbs
    less): file bytes for the readers, UTF-8 text bytes for every other stage. The dedup stages are
    also scored on the planted copies: recall per edit rate and exact-copy variant, recall over the
    pairs whose true Jaccard similarity is at least 0.8, and removals that are no planted copy.
(b) end to end: `prepare(PrepareConfig(inputs=[corpus], workers=--workers, tokenize=...))` into a fresh
    folder; wall time, MB/s of text read, CPU time of this process and its workers, each phase's time
    (pass 1 clean + filter, global dedup, pass 3 write, tokenize, report), when each work unit and each
    tokenized part finished, and the report's counts. `--unit-mb` changes prepare's work unit size.
(c) resume: the same call again into the same folder, where everything is finished: only the global
    dedup pass, the tokenizer's check of its shards and the report are redone.

The default run (100 MB) takes about 7 minutes on 2 idle cores, plus ~40 s the first time to build the
corpus; `--quick` is a 5 MB smoke run (under a minute).

    .venv/bin/python benchmarks/data_pipeline.py --json runs/bench/data_pipeline.json
    .venv/bin/python benchmarks/data_pipeline.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import html
import json
import multiprocessing
import platform
import random
import re
import resource
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from machine import machine_info

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CORPUS_VERSION = 2
MB = 1e6

# Shares of the corpus (UTF-8 text bytes); generated English fills the rest.
SHARES = {"chinese": 0.14, "near_copy": 0.10, "exact_copy": 0.03, "spam": 0.05}
NEAR_RATES = (0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2)
PII_SHARE = 0.05
BOILERPLATE_SHARE = 0.08
UNICODE_SHARE = 0.02

_NEWLINE_SPACES = re.compile(r" ?\n ?")
_BLANK_RUNS = re.compile(r"\n{3,}")


# ---- corpus: pieces ---------------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    """Words, with "\\n" as a token at every line end (so generated text keeps its line shape)."""
    out: list[str] = []
    for line in text.split("\n"):
        out.extend(line.split())
        out.append("\n")
    return out


def _join(tokens: list[str]) -> str:
    return _BLANK_RUNS.sub("\n\n", _NEWLINE_SPACES.sub("\n", " ".join(tokens))).strip()


def shakespeare_documents(text: str, rng: random.Random) -> list[str]:
    """Speeches (blank-line separated) grouped into documents of 300-3,000 characters."""
    speeches = [p.strip() for p in text.split("\n\n") if p.strip()]
    docs: list[str] = []
    current: list[str] = []
    target = rng.randint(300, 3000)
    for speech in speeches:
        current.append(speech)
        if sum(map(len, current)) >= target:
            docs.append("\n\n".join(current))
            current, target = [], rng.randint(300, 3000)
    if current:
        docs.append("\n\n".join(current))
    return docs


class MarkovText:
    """An order-2 Markov chain over the words (and line ends) of a text."""

    def __init__(self, text: str, rng: random.Random) -> None:
        tokens = _tokens(text)
        chain: dict[tuple[str, str], list[str]] = defaultdict(list)
        triples = list(zip(tokens, tokens[1:], tokens[2:], strict=False))
        for a, b, c in triples:
            chain[(a, b)].append(c)
        self.chain = dict(chain)
        # Start where a speech starts: after a blank line.
        self.starts = [(b, c) for a, b, c in triples if a == "\n" and b != "\n"]
        self.rng = rng

    def tokens(self, n: int) -> list[str]:
        rng, chain = self.rng, self.chain
        a, b = rng.choice(self.starts)
        out = [a, b]
        while len(out) < n:
            following = chain.get((a, b))
            if following is None:  # the end of the text: start another speech
                a, b = rng.choice(self.starts)
                out += ["\n", a, b]
                continue
            c = rng.choice(following)
            out.append(c)
            a, b = b, c
        return out

    def document(self, n: int) -> str:
        return _join(self.tokens(n))


def _doc_tokens(rng: random.Random) -> int:
    """Log-normal document length in tokens: median ~450, a long tail to ~20,000."""
    return int(min(20_000, max(40, rng.lognormvariate(6.1, 0.8))))


def cmmlu_sentences(folder: Path) -> list[str]:
    """Each CMMLU question with its answer as one Chinese sentence."""
    sentences = []
    for path in sorted(folder.glob("*/*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                question = (row.get("Question") or "").strip().rstrip("。？?：: _（）()")
                answer = (row.get(row.get("Answer") or "", "") or "").strip().rstrip("。")
                if question:
                    sentences.append(f"{question}：{answer}。" if answer else f"{question}。")
    return sentences


def chinese_document(sentences: list[str], rng: random.Random) -> str:
    count = int(min(200, max(3, rng.lognormvariate(2.9, 0.7))))
    picked = rng.sample(sentences, count)
    paragraphs, i = [], 0
    while i < len(picked):
        step = rng.randint(2, 6)
        paragraphs.append("".join(picked[i : i + step]))
        i += step
    return "\n\n".join(paragraphs)


def perturb(text: str, rate: float, rng: random.Random, chinese: bool) -> str:
    """Swap adjacent units, delete units or insert copies of other units, `rate` of the units in all."""
    units = list(text) if chinese else _tokens(text)
    for _ in range(max(1, round(rate * len(units)))):
        i = rng.randrange(len(units))
        kind = rng.randrange(3)
        if kind == 0 and i + 1 < len(units):
            units[i], units[i + 1] = units[i + 1], units[i]
        elif kind == 1 and len(units) > 2:
            del units[i]
        else:
            units.insert(i, units[rng.randrange(len(units))])
    return "".join(units) if chinese else _join(units)


# Exact copies: each variant is equal to its original after cleaning or under the exact-key normalisation.
def exact_copy(text: str, rng: random.Random, chinese: bool) -> tuple[str, str]:
    variant = rng.choice(("verbatim", "verbatim", "spacing", "case", "boilerplate"))
    if variant == "spacing":
        return variant, text.replace("\n", "  \n").replace(", ", ",   ")
    if variant == "case" and not chinese:
        return variant, text.upper()
    if variant == "boilerplate":
        lines = ZH_BOILERPLATE if chinese else EN_BOILERPLATE
        return variant, text + "\n\n" + rng.choice(lines)
    return "verbatim", text


EN_BOILERPLATE = (
    "Share on Facebook",
    "All rights reserved.",
    "© 2024 Globe Daily Media. All rights reserved.",
    "Home | About | Contact | Privacy Policy",
    "We use cookies to improve your experience. Accept all cookies",
    "Read more",
    "Skip to main content",
    "Page 2 of 7",
    "Previous post",
    "Subscribe to our newsletter for weekly updates",
    "Click here to download the app",
)
ZH_BOILERPLATE = ("分享到：", "版权所有 © 2023 新华文化网", "返回顶部", "上一篇：", "相关阅读", "扫一扫二维码关注我们")
FIRST = ("john", "mary", "li", "wei", "anna", "peter", "sara", "david", "emma", "tom")
LAST = ("smith", "chen", "wang", "brown", "garcia", "miller", "zhang", "jones", "liu", "taylor")
DOMAINS = ("example.com", "mail.example.org", "corp.example.net", "163.com", "qq.com", "university.edu")


def _email(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)}.{rng.choice(LAST)}{rng.randint(1, 99)}@{rng.choice(DOMAINS)}"


def _public_ip(rng: random.Random) -> str:
    first = rng.choice((23, 45, 64, 81, 98, 142, 151, 185, 203))
    return ".".join(map(str, (first, rng.randint(1, 254), rng.randint(1, 254), rng.randint(1, 254))))


def pii_line(rng: random.Random, chinese: bool) -> str:
    if chinese:
        mobile = f"1{rng.choice('3456789')}{rng.randint(0, 9)} {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"
        return f"联系人：{rng.choice(LAST).title()}先生，手机：{mobile}，邮箱：{_email(rng)}。"
    us = f"({rng.randint(200, 989)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}"
    uk = f"+44 20 7946 {rng.randint(1000, 9999)}"
    return rng.choice(
        (
            f"For questions write to {_email(rng)} or call {us}.",
            f"Contact {rng.choice(FIRST).title()} at {_email(rng)}, phone {uk}.",
            f"The login from {_public_ip(rng)} was reported to {_email(rng)}.",
        )
    )


def _insert_line(text: str, line: str, rng: random.Random) -> str:
    paragraphs = text.split("\n\n")
    paragraphs.insert(rng.randint(0, len(paragraphs)), line)
    return "\n\n".join(paragraphs)


def decorate(text: str, rng: random.Random, chinese: bool) -> tuple[str, list[str]]:
    """Personal data, boilerplate lines and Unicode repairs, each on a share of the documents."""
    marks = []
    if rng.random() < PII_SHARE:
        text = _insert_line(text, pii_line(rng, chinese), rng)
        marks.append("pii")
    if rng.random() < BOILERPLATE_SHARE:
        lines = ZH_BOILERPLATE if chinese else EN_BOILERPLATE
        for _ in range(rng.randint(1, 3)):
            line = rng.choice(lines)
            text = f"{line}\n{text}" if rng.random() < 0.5 else f"{text}\n{line}"
        marks.append("boilerplate")
    if not chinese and rng.random() < UNICODE_SHARE:
        text = text.replace(" and ", " &amp; ", 2) + "\n\nOur cafe\u0301 serves cre\u0300me bru\u0302le\u0301e."
        marks.append("unicode")
    return text, marks


PROMOTIONS = (
    "BUY NOW!!! Best prices on replica watches, free shipping worldwide",
    "Limited offer: 90% off designer bags, click the link below",
    "Earn $5000 a week from home, no experience needed",
    "Cheap loans approved in 5 minutes, bad credit OK",
    "Lose 10 kg in 10 days with our miracle pills",
)
KEYWORDS = (
    "cheap flights",
    "cheap hotels",
    "best deals",
    "discount",
    "coupon",
    "promo code",
    "free shipping",
    "sale",
    "outlet",
    "wholesale",
    "replica",
    "luxury bags",
    "watches",
    "sneakers",
    "payday loans",
    "car insurance",
    "crypto",
    "bitcoin",
    "forex signals",
    "weight loss",
    "diet pills",
    "seo services",
    "backlinks",
    "followers",
    "likes",
    "web hosting",
    "vpn",
    "gift cards",
)
BLOCKED = ("online casino bonus", "free sex cams", "xxx videos")
ZH_SPAM = ("六合彩", "时时彩", "百家乐", "网上赌场", "澳门葡京", "稳赚不赔", "日赚千元", "加微信", "免费送彩金")


def spam_document(rng: random.Random, markov: MarkovText) -> tuple[str, str]:
    kind = rng.choice(("repeat", "keywords", "hashtags", "teaser", "bullets", "blocked", "zh"))
    if kind == "repeat":
        line = rng.choice(PROMOTIONS)
        lines = [line] * rng.randint(15, 40) + [rng.choice(PROMOTIONS) for _ in range(3)]
        rng.shuffle(lines)
        text = "\n".join(lines)
    elif kind == "keywords":
        words = [rng.choice(KEYWORDS) for _ in range(rng.randint(60, 250))]
        text = "\n".join(", ".join(words[i : i + 12]) for i in range(0, len(words), 12))
    elif kind == "hashtags":
        body = markov.tokens(rng.randint(80, 300))
        text = _join([f"#{w.strip('.,;:!?')}" if rng.random() < 0.3 and w != "\n" else w for w in body])
    elif kind == "teaser":
        lines = [" ".join(markov.tokens(12)).replace("\n", " ").strip() + "..." for _ in range(rng.randint(8, 25))]
        text = "\n".join(lines)
    elif kind == "bullets":
        text = "\n".join(f"• {rng.choice(KEYWORDS)} {rng.choice(KEYWORDS)}" for _ in range(rng.randint(20, 60)))
    elif kind == "blocked":
        tokens = markov.tokens(_doc_tokens(rng))
        for _ in range(rng.randint(1, 3)):
            tokens.insert(rng.randrange(len(tokens)), rng.choice(BLOCKED))
        text = _join(tokens)
    else:
        lines = ["".join(rng.choice(ZH_SPAM) for _ in range(rng.randint(4, 10))) for _ in range(rng.randint(5, 20))]
        text = "\n".join(lines * 2)
    return f"spam_{kind}", text


def html_page(title: str, paragraphs: list[str]) -> str:
    body = "".join(f"<p>{html.escape(p)}</p>\n" for p in paragraphs)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>'
        f"{html.escape(title)}</title>\n<script>var tracker = {{page: 1}};</script>\n"
        '<style>body {font-family: serif}</style></head>\n<body>\n<nav><a href="/">Home</a> | '
        '<a href="/about">About</a> | <a href="/contact">Contact</a></nav>\n'
        f"<article><h1>{html.escape(title)}</h1>\n{body}</article>\n"
        "<footer><p>© 2024 Globe Daily Media. All rights reserved.</p>"
        "<p>We use cookies to improve your experience.</p></footer>\n</body></html>\n"
    )


# ---- corpus: assembly -------------------------------------------------------------------------------


@dataclasses.dataclass
class Corpus:
    folder: Path
    jsonl: list[Path]
    txt: list[Path]
    html: list[Path]
    stats: dict[str, Any]

    @property
    def files(self) -> list[Path]:
        return [*self.jsonl, *self.txt, *self.html]


def _text_bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def build_corpus(data: Path, folder: Path, size_mb: float, seed: int) -> dict[str, Any]:
    """Write the corpus into `folder` (JSONL shards, txt/, html/); returns its statistics."""
    rng = random.Random(seed)
    shakespeare = (data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    markov = MarkovText(shakespeare, rng)
    sentences = cmmlu_sentences(data / "cmmlu") if (data / "cmmlu").is_dir() else []
    if not sentences:
        print(f"note: no CMMLU questions under {data / 'cmmlu'}; the corpus has no Chinese documents")
    total = size_mb * MB
    quick = size_mb < 20
    docs: list[dict[str, Any]] = []  # kind, text, chinese, meta; the index before shuffling names a document
    size = Counter()

    def add(kind: str, text: str, chinese: bool, **meta: Any) -> None:
        docs.append({"kind": kind, "text": text, "chinese": chinese, "meta": meta})
        size[kind] += _text_bytes(text)

    bar = tqdm(total=round(total / MB), unit="MB", desc="build corpus")

    def advance() -> None:
        bar.update(round(sum(size.values()) / MB) - bar.n)

    for text in shakespeare_documents(shakespeare, rng):
        add("shakespeare", text, False)
    extra_files = 4 if quick else 16
    txt_docs = [markov.document(rng.randint(3000, 8000)) for _ in range(extra_files)]
    pages = []
    for _ in range(extra_files):
        paragraphs = [markov.document(rng.randint(40, 200)).replace("\n", " ") for _ in range(rng.randint(4, 20))]
        pages.append(html_page(" ".join(markov.tokens(6)).replace("\n", " ").title(), paragraphs))
    size["txt_file"] = sum(map(_text_bytes, txt_docs))
    size["html_file"] = sum(map(_text_bytes, pages))
    if sentences:
        while size["chinese"] < SHARES["chinese"] * total:
            add("chinese", chinese_document(sentences, rng), True)
            advance()
    base_target = total * (1 - SHARES["near_copy"] - SHARES["exact_copy"] - SHARES["spam"])
    while sum(size.values()) < base_target:
        add("markov", markov.document(_doc_tokens(rng)), False)
        advance()
    # Decorations go on the originals before copying, so copies carry the same personal data.
    marks = Counter()
    for doc in docs:
        doc["text"], added = decorate(doc["text"], rng, doc["chinese"])
        marks.update(added)
    originals = len(docs)
    rates = Counter()
    while size["near_copy"] < SHARES["near_copy"] * total:
        source = rng.randrange(originals)
        rate = rng.choice(NEAR_RATES)
        rates[f"{rate:.2f}"] += 1
        text, chinese = docs[source]["text"], docs[source]["chinese"]
        add("near_copy", perturb(text, rate, rng, chinese), chinese, copy_of=_doc_id(source), edit_rate=rate)
        advance()
    variants = Counter()
    while size["exact_copy"] < SHARES["exact_copy"] * total:
        source = rng.randrange(originals)
        variant, copy = exact_copy(docs[source]["text"], rng, docs[source]["chinese"])
        variants[variant] += 1
        add("exact_copy", copy, docs[source]["chinese"], copy_of=_doc_id(source), variant=variant)
        advance()
    spam = Counter()
    while size["spam"] < SHARES["spam"] * total:
        kind, text = spam_document(rng, markov)
        spam[kind] += 1
        add("spam", text, kind == "spam_zh", spam=kind)
        advance()
    bar.close()

    order = list(range(len(docs)))
    rng.shuffle(order)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "txt").mkdir(parents=True)
    (tmp / "html").mkdir()
    shard_bytes = max(0.5, size_mb / 12) * MB
    shard, written, handle = 0, 0.0, None
    for number in order:
        doc = docs[number]
        if handle is None:
            handle = (tmp / f"shard-{shard:05d}.jsonl").open("w", encoding="utf-8")
        record = {"id": _doc_id(number), "text": doc["text"], "kind": doc["kind"], **doc["meta"]}
        line = json.dumps(record, ensure_ascii=False) + "\n"
        handle.write(line)
        written += len(line.encode("utf-8"))
        if written >= shard_bytes:
            handle.close()
            handle, shard, written = None, shard + 1, 0.0
    if handle is not None:
        handle.close()
    for i, text in enumerate(txt_docs):
        (tmp / "txt" / f"story-{i:03d}.txt").write_text(text + "\n", encoding="utf-8")
    for i, page in enumerate(pages):
        (tmp / "html" / f"page-{i:03d}.html").write_text(page, encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    by_kind = Counter(doc["kind"] for doc in docs)
    return {
        "documents": len(docs) + 2 * extra_files,
        "mb": sum(size.values()) / MB,
        "documents_by_kind": {**dict(by_kind), "txt_file": extra_files, "html_file": extra_files},
        "mb_by_kind": {k: v / MB for k, v in sorted(size.items())},
        "near_copy_rates": dict(sorted(rates.items())),
        "exact_copy_variants": dict(variants),
        "spam_kinds": dict(spam),
        "decorated": dict(marks),
    }


def _doc_id(number: int) -> str:
    return f"doc-{number:07d}"


def ensure_corpus(data: Path, workdir: Path, size_mb: float, seed: int) -> Corpus:
    tag = f"corpus-{size_mb:g}mb-seed{seed}"
    folder = workdir / tag
    stamp = workdir / f"{tag}.json"
    want = {"version": CORPUS_VERSION, "size_mb": size_mb, "seed": seed}
    try:
        saved = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = None
    if not (saved and saved.get("corpus") == want and folder.is_dir()):
        print(f"building a {size_mb:g} MB corpus in {folder} ...", flush=True)
        start = time.perf_counter()
        stats = build_corpus(data, folder, size_mb, seed)
        stats["build_s"] = time.perf_counter() - start
        from puyu.io import atomic_write_text

        atomic_write_text(stamp, json.dumps({"corpus": want, "stats": stats}, indent=2) + "\n")
    else:
        stats = saved["stats"]
        print(f"reusing {folder}")
    return Corpus(
        folder=folder,
        jsonl=sorted(folder.glob("shard-*.jsonl")),
        txt=sorted((folder / "txt").glob("*.txt")),
        html=sorted((folder / "html").glob("*.html")),
        stats=stats,
    )


# ---- tokenizers -------------------------------------------------------------------------------------


def prepare_tokenizers(corpus: Corpus, workdir: Path, slice_mb: float, vocab: int) -> dict[str, Any]:
    """The byte-level tokenizer (saved to a folder) and a BPE trained on the first `slice_mb` of the corpus."""
    from puyu.tokenizer import byte_level_tokenizer, train_bpe

    folder = workdir / "tokenizers"
    byte_dir = folder / "byte-internlm2"
    byte_level_tokenizer("internlm2").save_pretrained(byte_dir)
    slice_path = folder / f"bpe-slice-{slice_mb:g}mb.txt"
    slice_path.parent.mkdir(parents=True, exist_ok=True)
    taken = 0
    with slice_path.open("w", encoding="utf-8") as out:
        for shard in corpus.jsonl:
            with shard.open(encoding="utf-8") as handle:
                for line in handle:
                    text = json.loads(line)["text"]
                    out.write(text + "\n")
                    taken += _text_bytes(text)
                    if taken >= slice_mb * MB:
                        break
            if taken >= slice_mb * MB:
                break
    bpe_dir = folder / f"bpe-{vocab}-{corpus.folder.name}"
    print(f"training a {vocab:,}-token BPE on {taken / MB:.1f} MB ...", flush=True)
    start, cpu = time.perf_counter(), time.process_time()
    bpe = train_bpe([slice_path], vocab_size=vocab, out_dir=bpe_dir, show_progress=False)
    train_s, train_cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "byte_dir": byte_dir,
        "bpe_dir": bpe_dir,
        "bpe_vocab": bpe.vocab_size,
        "train": {"mb": taken / MB, "seconds": train_s, "cpu_s": train_cpu, "vocab": bpe.vocab_size},
    }


# ---- (a) stages ------------------------------------------------------------------------------------


class Timer:
    """Wall and CPU time of a block."""

    wall_s = cpu_s = 0.0

    def __enter__(self) -> Timer:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.cpu_s = time.process_time() - self._cpu


def _docs_mb(texts: list[str]) -> float:
    return sum(map(_text_bytes, texts)) / MB


def _row(stage: str, docs: int, mb: float, timer: Timer, in_prepare: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "stage": stage,
        "docs": docs,
        "mb": mb,
        "seconds": timer.wall_s,
        "cpu_s": timer.cpu_s,
        "mb_s": mb / timer.wall_s if timer.wall_s else float("inf"),
        "mb_cpu_s": mb / timer.cpu_s if timer.cpu_s else float("inf"),
        "docs_s": docs / timer.wall_s if timer.wall_s else float("inf"),
        "in_prepare": in_prepare,
        **extra,
    }


def _fresh(doc: Any) -> Any:
    """A copy whose meta has no language yet (the language filter caches its answer in meta)."""
    meta = {k: v for k, v in doc.meta.items() if k not in ("language", "language_score")}
    return dataclasses.replace(doc, meta=meta)


def _each(items: list[Any], desc: str) -> Iterator[Any]:
    return iter(tqdm(items, desc=desc, unit="doc", leave=False, mininterval=0.5))


def tokenize_stage(path: str, tokenizer: str) -> dict[str, float]:
    """Tokenize the texts of a JSONL file of strings as prepare's tokenize workers do (`document_ids`, one
    document at a time); runs in a fresh process. Returns wall and CPU seconds and the token count."""
    from puyu.data.tokenize import document_ids
    from puyu.tokenizer import Tokenizer, byte_level_tokenizer

    tok = byte_level_tokenizer("internlm2") if tokenizer == "byte-level" else Tokenizer.from_pretrained(tokenizer)
    with open(path, encoding="utf-8") as handle:
        texts = [json.loads(line) for line in handle]
    document_ids(tok, texts[0])  # warm-up
    with Timer() as timer:
        tokens = sum(len(document_ids(tok, text)) for text in _each(texts, f"tokenize {Path(tokenizer).name}"))
    return {"wall_s": timer.wall_s, "cpu_s": timer.cpu_s, "tokens": tokens}


def run_stages(
    corpus: Corpus, tokenizers: dict[str, str], prepare_tokenizer: str, sample_mb: float, scratch: Path
) -> dict[str, Any]:
    from puyu.data.cleaning import CleanConfig, Cleaner
    from puyu.data.dedup import (
        DedupConfig,
        MinHasher,
        band_keys,
        exact_keys,
        find_exact_duplicates,
        near_duplicate_roots,
    )
    from puyu.data.dedup.text import char_classes, nfkc_unstable
    from puyu.data.document import Tally
    from puyu.data.filters import FiltersConfig, build_filters, detect_language, first_rejection
    from puyu.data.pii import PiiConfig, PiiScrubber
    from puyu.data.prepare import SIGNATURE_BATCH
    from puyu.data.readers import read_documents

    rows: list[dict[str, Any]] = []
    startup: dict[str, float] = {}
    tally = Tally()

    # One-time costs each worker process pays before its first document, timed apart from the stages.
    with Timer() as t:
        detect_language("warm up the language model with a sentence of plain English words")
    startup["language model load"] = t.wall_s
    with Timer() as t:
        char_classes(), nfkc_unstable()
    startup["dedup character tables"] = t.wall_s
    with Timer() as t:
        filters = build_filters(FiltersConfig())
    startup["build filters"] = t.wall_s

    # read
    docs: list[Any] = []
    for label, files in (("read: JSONL parse", corpus.jsonl), ("read: txt files", corpus.txt)):
        size = sum(f.stat().st_size for f in files) / MB
        before = len(docs)
        with Timer() as t:
            for file in tqdm(files, desc=label, unit="file", leave=False):
                docs.extend(read_documents(file, tally))
        rows.append(_row(label, len(docs) - before, size, t))
    size = sum(f.stat().st_size for f in corpus.html) / MB
    with Timer() as t:  # trafilatura's imports are part of the first page's cost: warm them up first
        from puyu.data.readers import html_text

        html_text("<html><body><p>warm up</p></body></html>")
    startup["trafilatura import"] = t.wall_s
    before = len(docs)
    with Timer() as t:
        for file in tqdm(corpus.html, desc="read: html (trafilatura)", unit="file", leave=False):
            docs.extend(read_documents(file, tally))
    rows.append(_row("read: html (trafilatura)", len(docs) - before, size, t))
    text_mb = _docs_mb([d.text for d in docs])

    # clean
    cleaner = Cleaner(CleanConfig())
    with Timer() as t:
        cleaned = [cleaner(d, tally) for d in _each(docs, "clean")]
    rows.append(_row("clean", len(docs), text_mb, t))
    del docs

    # filters: the chain as prepare runs it (first rejection ends a document's checks)
    cleaned = [_fresh(d) for d in cleaned]
    cleaned_mb = _docs_mb([d.text for d in cleaned])
    kept: list[Any] = []
    removed: Counter[str] = Counter()
    removed_by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    with Timer() as t:
        for doc in _each(cleaned, "filters"):
            rejection = first_rejection(filters, doc)
            if rejection is None:
                kept.append(doc)
            else:
                removed[rejection[0]] += 1
                removed_by_kind[rejection[0]][str(doc.meta.get("kind", "file"))] += 1
    rows.append(_row("filters (default chain)", len(cleaned), cleaned_mb, t, kept=len(kept)))

    # the same filters one by one on a sample, every filter on every sample document
    sample, sample_bytes = [], 0
    for doc in cleaned:
        if sample_bytes >= sample_mb * MB:
            break
        sample.append(_fresh(doc))
        sample_bytes += _text_bytes(doc.text)
    per_filter = dict.fromkeys((f.name for f in filters), 0.0)
    clock = time.perf_counter
    for doc in _each(sample, "filters one by one"):
        for check in filters:
            start = clock()
            check(doc)
            per_filter[check.name] += clock() - start
    filter_rows = [
        {"filter": name, "seconds": s, "mb_s": sample_bytes / MB / s if s else float("inf")}
        for name, s in per_filter.items()
    ]
    del cleaned, sample

    # PII
    scrubber = PiiScrubber(PiiConfig())
    kept_mb = _docs_mb([d.text for d in kept])
    with Timer() as t:
        scrubbed = [scrubber(d, tally) for d in _each(kept, "pii")]
    rows.append(_row("PII scrubbing", len(kept), kept_mb, t))
    del kept

    # the work file line of each kept document
    with Timer() as t:
        encoded = sum(len(json.dumps(d.to_json(), ensure_ascii=False)) for d in _each(scrubbed, "json"))
    texts = [d.text for d in scrubbed]
    metas = [d.meta for d in scrubbed]
    del scrubbed
    texts_mb = _docs_mb(texts)
    rows.append(_row("work file JSON encoding", len(texts), texts_mb, t, chars=encoded))

    batches = [texts[i : i + SIGNATURE_BATCH] for i in range(0, len(texts), SIGNATURE_BATCH)]
    with Timer() as t:
        keys = np.concatenate([exact_keys(b) for b in tqdm(batches, desc="exact keys", leave=False)])
    rows.append(_row("exact keys (xxh3-128)", len(texts), texts_mb, t))
    config = DedupConfig()
    hasher = MinHasher(config)
    with Timer() as t:
        signatures = np.concatenate([hasher.signatures(b) for b in tqdm(batches, desc="minhash", leave=False)])
        bands = band_keys(signatures, config)
    rows.append(_row("MinHash signatures + band keys", len(texts), texts_mb, t))
    with Timer() as t:
        exact = find_exact_duplicates(keys)
        roots = near_duplicate_roots(bands, config, signatures)
        near = (roots != np.arange(len(roots))) & ~exact
    rows.append(
        _row(
            "global dedup (exact + LSH clustering)",
            len(texts),
            texts_mb,
            t,
            exact=int(exact.sum()),
            near=int(near.sum()),
        )
    )
    planted = score_planted(texts, metas, keys, roots, exact | near, config.ngram)
    survivors = [text for text, drop in zip(texts, exact | near, strict=True) if not drop]
    del texts, signatures, bands
    survivors_mb = _docs_mb(survivors)
    # Tokenization runs in a fresh process, as prepare's tokenize workers do: in this one, whose heap holds
    # the survivors between the holes of every earlier stage's freed texts, the tokenizer's own (malloc)
    # allocations made encoding ~25% slower (measured), which would be the benchmark's doing, not puyu's.
    handover = scratch / "survivors.jsonl"
    with handover.open("w", encoding="utf-8") as out:
        out.writelines(json.dumps(text, ensure_ascii=False) + "\n" for text in survivors)
    count = len(survivors)
    del survivors
    for name, tokenizer in tokenizers.items():
        print(f"tokenize: {name} (a fresh process) ...", flush=True)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            measured = pool.apply(tokenize_stage, (str(handover), tokenizer))
        t = Timer()
        t.wall_s, t.cpu_s, tokens = measured["wall_s"], measured["cpu_s"], int(measured["tokens"])
        rows.append(
            _row(
                f"tokenize: {name}",
                count,
                survivors_mb,
                t,
                in_prepare=name == prepare_tokenizer,
                tokens=tokens,
                tokens_s=tokens / t.wall_s,
                bytes_per_token=survivors_mb * MB / tokens,
            )
        )
    handover.unlink()
    total = sum(r["seconds"] for r in rows if r["in_prepare"])
    for r in rows:
        r["share"] = r["seconds"] / total if r["in_prepare"] else None
    return {
        "rows": rows,
        "text_mb": text_mb,
        "filters": filter_rows,
        "filter_sample_mb": sample_bytes / MB,
        "removed": dict(removed.most_common()),
        "removed_by_kind": {k: dict(v.most_common()) for k, v in removed_by_kind.items()},
        "startup_s": startup,
        "single_core_total_s": total,
        "single_core_cpu_s": sum(r["cpu_s"] for r in rows if r["in_prepare"]),
        "planted": planted,
    }


def score_planted(
    texts: list[str], metas: list[dict[str, Any]], keys: np.ndarray, roots: np.ndarray, drop: np.ndarray, ngram: int
) -> dict[str, Any]:
    """How the dedup stages did on the planted copies that passed the filters with their original.

    A pair is found when both documents end up in one cluster (or share the exact key). Recall per edit
    rate and per exact-copy variant, recall over the near copies whose true Jaccard (of the shingle sets
    `puyu.data.dedup.shingles` gives) is at least 0.8, and the removals that are no planted copy.
    """
    from puyu.data.dedup import shingles

    where = {m.get("id"): i for i, m in enumerate(metas)}
    by_label: dict[tuple[int, float, str], list[int]] = defaultdict(lambda: [0, 0])
    involved: set[int] = set()
    high = [0, 0]
    for j, meta in enumerate(metas):
        i = where.get(meta["copy_of"]) if "copy_of" in meta else None
        if i is None:
            continue
        involved.update((i, j))
        found = int(roots[i] == roots[j] or bool((keys[i] == keys[j]).all()))
        if "edit_rate" in meta:
            label = (1, meta["edit_rate"], f"near copy, {100 * meta['edit_rate']:.0f}% of units edited")
            a, b = set(shingles(texts[i], ngram)), set(shingles(texts[j], ngram))
            if len(a & b) >= 0.8 * len(a | b):
                high[0] += found
                high[1] += 1
        else:
            label = (0, 0.0, f"exact copy, {meta.get('variant')}")
        by_label[label][0] += found
        by_label[label][1] += 1
    other = [i for i in np.flatnonzero(drop).tolist() if i not in involved]
    return {
        "pairs": {k[2]: {"found": f, "pairs": n, "recall": f / n} for k, (f, n) in sorted(by_label.items())},
        "recall_j80": high[0] / high[1] if high[1] else float("nan"),
        "pairs_j80": high[1],
        "removed": int(drop.sum()),
        "removed_not_planted": len(other),
        "removed_not_planted_kinds": dict(Counter(str(metas[i].get("kind", "file")) for i in other)),
    }


# ---- (b), (c) prepare end to end ------------------------------------------------------------------


def _cpu_now() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # workers, once they have exited and been joined
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


PASS1 = "pass 1: read, clean, filter, PII, keys"


@contextlib.contextmanager
def phase_timer(phases: dict[str, dict[str, float]]) -> Iterator[None]:
    """Time prepare's phases by wrapping the module functions it calls (in this, the parent, process)."""
    import puyu.data.prepare as prepare_module
    import puyu.data.report as report_module

    saved: list[tuple[Any, str, Any]] = []

    def wrap(module: Any, name: str, label: Callable[..., str]) -> None:
        original = getattr(module, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start, cpu, epoch = time.perf_counter(), _cpu_now(), time.time()
            try:
                return original(*args, **kwargs)
            finally:
                entry = phases.setdefault(
                    label(*args, **kwargs), {"seconds": 0.0, "cpu_s": 0.0, "jobs": 0, "started": epoch}
                )
                entry["seconds"] += time.perf_counter() - start
                entry["cpu_s"] += _cpu_now() - cpu
                if name == "_run_parallel":
                    entry["jobs"] += len(args[1])

        saved.append((module, name, original))
        setattr(module, name, timed)

    labels = {"clean + filter": PASS1, "deduplicate + write": "pass 3: write parts"}
    wrap(prepare_module, "_run_parallel", lambda fn, jobs, workers, label, progress: labels.get(label, label))
    wrap(prepare_module, "find_duplicates", lambda *a, **k: "pass 2: global dedup")
    wrap(prepare_module, "_tokenize", lambda *a, **k: "tokenize")
    wrap(report_module, "write_prepare_report", lambda *a, **k: "report (json, md, png)")
    try:
        yield
    finally:
        for module, name, original in reversed(saved):
            setattr(module, name, original)


def run_prepare(config: Any, text_mb: float, label: str) -> dict[str, Any]:
    from puyu.data.prepare import prepare

    phases: dict[str, dict[str, float]] = {}
    print(f"{label} ...", flush=True)
    start, cpu = time.perf_counter(), _cpu_now()
    with phase_timer(phases):
        report = prepare(config, progress=True)
    wall, cpu_s = time.perf_counter() - start, _cpu_now() - cpu
    accounted = sum(p["seconds"] for p in phases.values())
    phases["other (inputs, fingerprint, tallies)"] = {
        "seconds": wall - accounted,
        "cpu_s": cpu_s - sum(p["cpu_s"] for p in phases.values()),
        "jobs": 0,
    }
    # When each unit (pass 1) and each tokenized part finished, from the files that mark them done: with
    # as many units as workers, the spread is the time a worker sat idle.
    finished = {}
    output = Path(config.output)
    for phase, pattern in ((PASS1, "work/unit-*.done.json"), ("tokenize", "tokens/.progress/prepared-*.json")):
        entry = phases.get(phase)
        if entry and (entry["jobs"] or phase == "tokenize"):
            ends = [f.stat().st_mtime - entry["started"] for f in sorted(output.glob(pattern))]
            if all(end > 0 for end in ends):
                finished[phase] = ends
    return {
        "label": label,
        "seconds": wall,
        "cpu_s": cpu_s,
        "mb_s": text_mb / wall,
        "phases": phases,
        "finished_s": finished,
        "report": report,
    }


def report_counts(report: dict[str, Any]) -> dict[str, Any]:
    tokens = report.get("tokens") or {}
    return {
        "read_docs": report["read"]["documents"],
        "read_mb": report["read"]["bytes"] / MB,
        "removed_by_filter": {k: v["documents"] for k, v in report["removed_by_filter"].items()},
        "removed_by_filter_mb": {k: v["bytes"] / MB for k, v in report["removed_by_filter"].items()},
        "after_filters_docs": report["after_filters"]["documents"],
        "exact_duplicates": report["duplicates"]["exact"],
        "near_duplicates": report["duplicates"]["near"],
        "duplicates_mb": report["duplicates"]["bytes"] / MB,
        "written_docs": report["written"]["documents"],
        "written_mb": report["written"]["bytes"] / MB,
        "pii": report["pii"],
        "cleaning": report["cleaning"],
        "problems": report["problems"]["count"],
        "units": report["inputs"]["units"],
        "tokens": {name: split["tokens"] for name, split in tokens.get("splits", {}).items()},
    }


# ---- printing ---------------------------------------------------------------------------------------


def print_stages(stages: dict[str, Any]) -> None:
    print(f"\n(a) stages, one process, one core ({stages['text_mb']:.1f} MB of text read)")
    print(
        f"{'stage':<40}{'docs':>8}{'MB in':>8}{'seconds':>9}{'CPU s':>8}{'MB/s':>9}{'MB/CPU-s':>10}{'docs/s':>9}"
        f"{'share':>7}"
    )
    for r in stages["rows"]:
        share = f"{100 * r['share']:.1f}%" if r["share"] is not None else "-"
        print(
            f"{r['stage']:<40}{r['docs']:>8,}{r['mb']:>8.1f}{r['seconds']:>9.2f}{r['cpu_s']:>8.2f}{r['mb_s']:>9.2f}"
            f"{r['mb_cpu_s']:>10.2f}{r['docs_s']:>9,.0f}{share:>7}"
        )
        if "tokens" in r:
            per = f"{r['tokens_s']:,.0f} tokens/s, {r['bytes_per_token']:.2f} bytes/token"
            print(f"{'':<4}{r['tokens']:,} tokens, {per}")
    print(
        f"single-core sum of the stages prepare runs: {stages['single_core_total_s']:.1f} s "
        f"({stages['single_core_cpu_s']:.1f} s CPU); share = of that wall time"
    )
    print(f"\nfilters one by one on a {stages['filter_sample_mb']:.1f} MB sample (every filter sees every document):")
    total = sum(f["seconds"] for f in stages["filters"])
    for f in stages["filters"]:
        print(f"  {f['filter']:<22}{f['seconds']:>8.2f} s{f['mb_s']:>10.1f} MB/s{100 * f['seconds'] / total:>7.1f}%")
    print("removed by the chain (filter: kinds of documents):")
    for name, n in stages["removed"].items():
        kinds = ", ".join(f"{k} {v}" for k, v in stages["removed_by_kind"][name].items())
        print(f"  {name:<22}{n:>7,}  ({kinds})")
    planted = stages["planted"]
    print(
        f"planted copies that passed the filters with their original (found / pairs); recall at true J >= 0.8: "
        f"{planted['recall_j80']:.3f} of {planted['pairs_j80']:,} pairs"
    )
    for label, p in planted["pairs"].items():
        print(f"  {label:<40}{p['found']:>6,} / {p['pairs']:<6,}{p['recall']:>7.3f}")
    print(
        f"  removed {planted['removed']:,} documents, {planted['removed_not_planted']:,} of them no planted copy "
        f"({planted['removed_not_planted_kinds']})"
    )
    print("per-process start-up: " + ", ".join(f"{k} {v:.2f} s" for k, v in stages["startup_s"].items()))


def print_prepare(run: dict[str, Any], workers: int) -> None:
    print(
        f"\n{run['label']}: {run['seconds']:.1f} s wall, {run['cpu_s']:.1f} s CPU "
        f"({run['cpu_s'] / run['seconds']:.2f} of {workers} cores busy), {run['mb_s']:.2f} MB/s"
    )
    print(f"  {'phase':<42}{'seconds':>9}{'CPU s':>9}{'cores':>7}{'jobs':>6}")
    for name, p in run["phases"].items():
        cores = p["cpu_s"] / p["seconds"] if p["seconds"] > 0.01 else 0.0
        print(f"  {name:<42}{p['seconds']:>9.2f}{p['cpu_s']:>9.2f}{cores:>7.2f}{int(p['jobs']):>6}")
    for name, ends in run["finished_s"].items():
        print(f"  {name}: jobs finished " + ", ".join(f"{e:.1f}" for e in ends) + " s after the phase started")


def print_counts(counts: dict[str, Any]) -> None:
    print(
        f"  read {counts['read_docs']:,} documents ({counts['read_mb']:.1f} MB) in {counts['units']} units; "
        f"kept by the filters {counts['after_filters_docs']:,}"
    )
    removed = ", ".join(f"{k} {v:,}" for k, v in sorted(counts["removed_by_filter"].items(), key=lambda kv: -kv[1]))
    print(f"  removed per filter: {removed}")
    print(
        f"  duplicates: exact {counts['exact_duplicates']:,}, near {counts['near_duplicates']:,} "
        f"({counts['duplicates_mb']:.1f} MB); written {counts['written_docs']:,} documents "
        f"({counts['written_mb']:.1f} MB); tokens {counts['tokens']}"
    )
    print(f"  PII replaced: {counts['pii']}; problems: {counts['problems']}")


# ---- main -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder (default ../shared/data)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("runs/bench/data"),
        help="corpus, tokenizers, outputs (default runs/bench/data)",
    )
    parser.add_argument("--size-mb", type=float, default=None, help="corpus size in MB of text (default 100)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 MB corpus, small BPE and samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="prepare's worker processes")
    parser.add_argument(
        "--unit-mb", type=float, default=None, help="prepare's work unit size in MiB (default: PrepareConfig's)"
    )
    parser.add_argument("--bpe-vocab", type=int, default=None, help="BPE vocabulary (default 16384; quick 2048)")
    parser.add_argument("--bpe-slice-mb", type=float, default=None, help="BPE training text (default 8; quick 1)")
    parser.add_argument("--filter-sample-mb", type=float, default=None, help="per-filter sample (default 10)")
    parser.add_argument(
        "--prepare-tokenizer", choices=("bpe", "byte-level"), default="bpe", help="tokenizer of the prepare run"
    )
    parser.add_argument("--skip-stages", action="store_true", help="only the prepare runs")
    parser.add_argument("--skip-prepare", action="store_true", help="only the stages")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    size_mb = args.size_mb or (5.0 if args.quick else 100.0)
    bpe_vocab = args.bpe_vocab or (2048 if args.quick else 16384)
    slice_mb = args.bpe_slice_mb or (1.0 if args.quick else 8.0)
    sample_mb = args.filter_sample_mb or (1.0 if args.quick else 10.0)
    if not (args.data / "tinyshakespeare" / "input.txt").is_file():
        print(f"skipped: {args.data / 'tinyshakespeare' / 'input.txt'} not found (pass --data path/to/shared/data)")
        return 0

    from puyu.data.prepare import PrepareConfig, PrepareTokenizeConfig, plan_units
    from puyu.data.readers import expand_inputs
    from puyu.io import atomic_write_text

    t0 = time.perf_counter()
    workdir = args.workdir
    corpus = ensure_corpus(args.data, workdir, size_mb, args.seed)
    stats = corpus.stats
    print(
        f"corpus: {stats['documents']:,} documents, {stats['mb']:.1f} MB of text in {len(corpus.files)} files; "
        + ", ".join(f"{k} {v:.1f} MB" for k, v in stats["mb_by_kind"].items())
    )
    tok = prepare_tokenizers(corpus, workdir, slice_mb, bpe_vocab)
    print(
        f"BPE: {tok['train']['vocab']:,} tokens from {tok['train']['mb']:.1f} MB in {tok['train']['seconds']:.1f} s "
        f"({tok['train']['cpu_s']:.1f} s CPU)"
    )
    tokenizer_dir = tok["bpe_dir"] if args.prepare_tokenizer == "bpe" else tok["byte_dir"]
    results: dict[str, Any] = {
        "benchmark": "data_pipeline",
        "machine": machine_info(("numpy",), platform=platform.platform()),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "corpus": {"folder": str(corpus.folder), "files": len(corpus.files), **stats},
        "bpe": {k: str(v) if isinstance(v, Path) else v for k, v in tok.items()},
    }

    if not args.skip_stages:
        tokenizers = {"byte-level": "byte-level", "bpe": str(tok["bpe_dir"])}
        stages = run_stages(corpus, tokenizers, args.prepare_tokenizer, sample_mb, workdir)
        print_stages(stages)
        results["stages"] = stages

    if not args.skip_prepare:
        output = workdir / f"prepared-{corpus.folder.name}"
        shutil.rmtree(output, ignore_errors=True)
        extra = {"unit_bytes": int(args.unit_mb * 2**20)} if args.unit_mb else {}
        config = PrepareConfig(
            inputs=[str(corpus.folder)],
            output=str(output),
            workers=args.workers,
            tokenize=PrepareTokenizeConfig(tokenizer=str(tokenizer_dir)),
            **extra,
        )
        text_mb = stats["mb"]
        units = plan_units(expand_inputs(config.inputs), config.unit_bytes)
        unit_mb = [sum(Path(f).stat().st_size for f in u.files) / MB for u in units]
        print(f"{len(units)} work units of " + ", ".join(f"{m:.1f}" for m in unit_mb) + " MB (file bytes)")
        first = run_prepare(config, text_mb, f"(b) prepare end to end, {args.workers} workers")
        print_prepare(first, args.workers)
        counts = report_counts(first["report"])
        print_counts(counts)
        again = run_prepare(config, text_mb, "(c) prepare again into the same folder (resume, all finished)")
        print_prepare(again, args.workers)
        same = report_counts(again["report"]) == counts
        print(f"  same counts as the first run: {same}")
        results["prepare"] = {
            "output": str(output),
            "workers": args.workers,
            "unit_bytes": config.unit_bytes,
            "unit_mb": unit_mb,
            "tokenizer": str(tokenizer_dir),
            "first": {k: v for k, v in first.items() if k != "report"},
            "counts": counts,
            "rerun": {k: v for k, v in again.items() if k != "report"},
            "rerun_same_counts": same,
        }
    results["total_s"] = time.perf_counter() - t0
    print(f"\ntotal {results['total_s']:.0f} s")
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
