"""Needle in a haystack: can a model find one planted fact in a long context?

Follows the test popularised by G. Kamradt and OpenCompass NeedleBench: for every (context length, depth) cell,
a filler text (the haystack, repeated when too short) is cut so the whole prompt is `length` tokens, a sentence
(the needle) is planted at `depth` percent of the filler, at a sentence boundary, and the model is asked a
question only the needle answers. The answer is scored 0..1 against the expected answer or keywords.

Outputs in `out_dir`: `cells.json` (the per-cell cache that makes a run resumable), `results.json`,
`results.csv`, `heatmap.png` (x = context length, y = depth, colour = score) and `summary.md`.

Lengths are measured with the model's tokenizer where one is at hand (local models; the chat template's tokens
are counted too), else by a characters-per-token estimate (API models: the prompt text only).
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from puyu.errors import PuyuError
from puyu.eval.models import EvalModel, greedy_params
from puyu.generation.sampling import SamplingParams
from puyu.io import atomic_path, atomic_write_text

DEFAULT_NEEDLE = "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day."
DEFAULT_QUESTION = "What is the best thing to do in San Francisco?"
DEFAULT_ANSWER = ["sandwich", "Dolores Park"]
DEFAULT_PROMPT = (
    "Read the document below, then answer the question using only what the document says.\n\n"
    "Document:\n{context}\n\n"
    "Question: {question}\n"
    "Answer briefly.\nAnswer:"
)
# Sentence ends: Western punctuation followed by whitespace or the end (closing quotes/brackets kept with the sentence),
# CJK full stops (no space follows them), and line breaks.
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|$)|[。！？]+[”’」』]*|\n")
_STOPWORDS = frozenset({"a", "an", "the", "is", "are", "was", "were", "be", "to", "of", "in", "on", "at", "and", "or"})


# ---------------------------------------------------------------------------------------------- length meters


class LengthMeter(Protocol):
    """Counts tokens and cuts text to a token budget."""

    def count(self, text: str) -> int: ...

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of `text` that has at most `max_tokens` tokens (approximately, for merges)."""
        ...


class TokenizerMeter:
    """Token lengths from a real tokenizer (a `puyu.tokenizer.Tokenizer`, or anything with `encode`)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def truncate(self, text: str, max_tokens: int) -> str:
        if max_tokens <= 0:
            return ""
        with_offsets = getattr(self.tokenizer, "encode_with_offsets", None)
        if with_offsets is not None:
            ids, offsets = with_offsets(text)
            return text if len(ids) <= max_tokens else text[: offsets[max_tokens][0]]
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        return text if len(ids) <= max_tokens else self.tokenizer.decode(ids[:max_tokens])


class CharMeter:
    """Token lengths estimated as characters / `chars_per_token` (for API models whose tokenizer is unknown;
    about 4 for English with modern BPE vocabularies, about 1.5 for Chinese)."""

    def __init__(self, chars_per_token: float = 4.0) -> None:
        if chars_per_token <= 0:
            raise PuyuError(f"chars_per_token must be > 0, got {chars_per_token}")
        self.chars_per_token = chars_per_token

    def count(self, text: str) -> int:
        return math.ceil(len(text) / self.chars_per_token)

    def truncate(self, text: str, max_tokens: int) -> str:
        return text[: max(0, int(max_tokens * self.chars_per_token))]


def length_meter(model: Any = None, tokenizer: Any = None, chars_per_token: float | None = None) -> LengthMeter:
    """The meter to use: an explicit meter or tokenizer, else the model's own `tokenizer` attribute (local
    models), else a characters-per-token estimate (4 unless `chars_per_token` says otherwise)."""
    if tokenizer is not None:
        return tokenizer if hasattr(tokenizer, "truncate") else TokenizerMeter(tokenizer)
    if chars_per_token is None and getattr(model, "tokenizer", None) is not None:
        return TokenizerMeter(model.tokenizer)
    return CharMeter(chars_per_token or 4.0)


# ---------------------------------------------------------------------------------------------- contexts


@dataclass
class NeedleContext:
    """One built prompt: the filler with the needle planted, and where it went."""

    prompt: str
    context: str
    needle_start: int  # character offset of the needle in `context`
    tokens: int  # the prompt's length by the meter
    actual_depth: float  # percent of the filler's tokens before the needle


def sentence_boundaries(text: str) -> list[int]:
    """Character offsets where a new sentence may start: 0 and after each sentence end (so len(text) only when
    the text ends with a whole sentence)."""
    return sorted({0, *(m.end() for m in _SENTENCE_END.finditer(text))})


def fill_haystack(haystack: str, max_tokens: int, meter: LengthMeter) -> str:
    """The haystack repeated (paragraph-separated) until it has `max_tokens` tokens, cut to that many."""
    text = haystack.strip()
    per_copy = meter.count(text)
    if per_copy == 0:
        raise PuyuError("the haystack text is empty")
    copies = max_tokens // per_copy + 1
    return meter.truncate("\n\n".join([text] * copies), max_tokens)


def insert_needle(filler: str, needle: str, depth: float, meter: LengthMeter) -> tuple[str, int]:
    """Plant `needle` in `filler` at the last sentence boundary at or before `depth` percent of its tokens.

    Returns:
        (context, character offset of the needle in it).
    """
    needle = needle.strip()
    # At depth 100 the whole filler is "before"; a filler cut mid-sentence keeps its last fragment after the needle.
    target_chars = (
        len(filler) if depth >= 100 else len(meter.truncate(filler, round(meter.count(filler) * depth / 100)))
    )
    boundaries = sentence_boundaries(filler)
    position = boundaries[bisect.bisect_right(boundaries, target_chars) - 1]
    before, after = filler[:position].rstrip(" "), filler[position:]
    if before and not before[-1].isspace():
        before += " "
    if after and not after[0].isspace():
        after = " " + after
    return before + needle + after, len(before)


def _render(template: str, context: str, question: str) -> str:
    """The template with its two fields filled (plain replacement: other braces in it stay as written)."""
    return template.replace("{question}", question).replace("{context}", context)


def build_context(
    filler_source: str,
    *,
    length: int,
    depth: float,
    needle: str,
    question: str,
    meter: LengthMeter,
    template: str = DEFAULT_PROMPT,
) -> NeedleContext:
    """Build the prompt of one cell: about `length` tokens in all, needle at `depth` percent.

    Args:
        filler_source: haystack text, already long enough (see `fill_haystack`); it is cut here.
        length: target prompt length in tokens (template, filler, needle and question together).
        depth: 0 = the needle opens the document, 100 = it closes it.
        needle: the sentence to plant.
        question: the question the needle answers.
        meter: token counter.
        template: prompt with `{context}` and `{question}` fields.
    """
    fixed = meter.count(_render(template, "", question)) + meter.count(needle) + 1
    budget = length - fixed
    if budget < 1:
        raise PuyuError(f"context length {length} is too short: the prompt without filler already has {fixed} tokens")
    best: NeedleContext | None = None
    # Token counts are not additive across joins (merges at the seams), so correct the budget a few times.
    for _ in range(4):
        filler = meter.truncate(filler_source, budget)
        context, start = insert_needle(filler, needle, depth, meter)
        prompt = _render(template, context, question)
        tokens = meter.count(prompt)
        before = meter.count(context[:start])
        filler_tokens = max(1, meter.count(context) - meter.count(needle))
        candidate = NeedleContext(prompt, context, start, tokens, min(100.0, 100.0 * before / filler_tokens))
        if best is None or abs(tokens - length) < abs(best.tokens - length):
            best = candidate
        if tokens == length:
            break
        budget += length - tokens
    assert best is not None
    return best


# ---------------------------------------------------------------------------------------------- scoring


def _normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", text.lower()).split())


def _contains(text: str, phrase: str) -> bool:
    """Whole-word containment for alphabetic phrases; plain containment where words are not space-separated."""
    if not phrase:
        return False
    if phrase[0].isascii() and phrase[-1].isascii():
        return f" {phrase} " in f" {text} "
    return phrase in text


def score_answer(response: str, answer: str | Sequence[str]) -> float:
    """How well `response` gives the expected answer, 0..1 (case, punctuation and spacing ignored).

    Args:
        response: the model's text.
        answer: one expected answer (1 when it appears in the response, else the share of its content words
            that appear), or a list of keywords (the share that appear).
    """
    said = _normalize(response)
    if isinstance(answer, str):
        expected = _normalize(answer)
        if _contains(said, expected):
            return 1.0
        words = [w for w in expected.split() if w not in _STOPWORDS] or expected.split()
        if not words:
            return 0.0
        said_words = set(said.split())
        return sum(w in said_words for w in words) / len(words)
    keywords = [_normalize(k) for k in answer if _normalize(k)]
    if not keywords:
        raise PuyuError("the expected answer has no keywords")
    return sum(_contains(said, k) for k in keywords) / len(keywords)


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class NeedleCell:
    """The result of one (length, depth) cell."""

    length: int
    depth: float
    status: str  # "ok" or "skipped"
    score: float | None = None
    response: str = ""
    prompt_tokens: int = 0
    actual_depth: float | None = None
    reason: str = ""


@dataclass
class NeedleReport:
    """A finished needle run."""

    model: str
    cells: list[NeedleCell]
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def mean_score(self) -> float | None:
        scores = [c.score for c in self.cells if c.score is not None]
        return sum(scores) / len(scores) if scores else None

    def score(self, length: int, depth: float) -> float | None:
        for cell in self.cells:
            if cell.length == length and cell.depth == depth:
                return cell.score
        raise KeyError((length, depth))


def _fingerprint(**parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _cell_key(length: int, depth: float) -> str:
    return f"{length}@{depth:g}"


def _load_cache(path: Path, fingerprint: str) -> dict[str, NeedleCell]:
    """Cached cells of an earlier run with the same settings; anything else is ignored (and recomputed)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("fingerprint") != fingerprint:
        return {}
    cells = {}
    for record in data.get("cells", []):
        cell = NeedleCell(**record)
        if cell.status == "ok":  # skipped cells are decided again: the model's limit may differ now
            cells[_cell_key(cell.length, cell.depth)] = cell
    return cells


def _save_cache(path: Path, fingerprint: str, cells: dict[str, NeedleCell]) -> None:
    payload = {"fingerprint": fingerprint, "cells": [asdict(c) for c in cells.values()]}
    atomic_write_text(path, json.dumps(payload, ensure_ascii=False, indent=1))


def _check_grid(context_lengths: Sequence[int], depths: Sequence[float]) -> tuple[list[int], list[float]]:
    if not context_lengths or not depths:
        raise PuyuError("needle test needs at least one context length and one depth")
    lengths = sorted({int(n) for n in context_lengths})
    if lengths[0] < 1:
        raise PuyuError(f"context lengths must be positive, got {lengths[0]}")
    grid_depths = sorted({float(d) for d in depths})
    if grid_depths[0] < 0 or grid_depths[-1] > 100:
        raise PuyuError(f"depths are percentages in [0, 100], got {grid_depths[0]:g}..{grid_depths[-1]:g}")
    return lengths, grid_depths


def run_needle(
    model: EvalModel,
    haystack_text: str,
    *,
    context_lengths: Sequence[int],
    depths: Sequence[float],
    needle: str = DEFAULT_NEEDLE,
    question: str = DEFAULT_QUESTION,
    answer: str | Sequence[str] = tuple(DEFAULT_ANSWER),
    out_dir: str | Path,
    tokenizer: Any = None,
    chars_per_token: float | None = None,
    chat: bool = True,
    max_tokens: int = 64,
    template: str = DEFAULT_PROMPT,
    progress: bool = True,
) -> NeedleReport:
    """Run the needle test over a grid of context lengths and depths.

    Args:
        model: an `EvalModel` (`puyu.eval.models`): `name`, `max_length`, `generate`, `chat`.
        haystack_text: filler text; repeated when shorter than a context needs.
        context_lengths: prompt lengths in tokens. Cells with `length + max_tokens > model.max_length` are
            recorded as skipped.
        depths: needle positions in percent of the filler (0 = start, 100 = end).
        needle: the planted sentence.
        question: asked after the document.
        answer: the expected answer (string) or keywords (list); see `score_answer`.
        out_dir: output folder; cells already in its `cells.json` from a run with the same settings are reused.
        tokenizer: length meter or tokenizer; default the model's `tokenizer`, else a character estimate.
        chars_per_token: use a character estimate with this ratio (API models).
        chat: ask through the chat interface (the model's template) instead of plain completion.
        max_tokens: answer budget.
        template: prompt with `{context}` and `{question}`.
        progress: show a progress bar.

    Returns:
        The cells and the files written (results.json, results.csv, heatmap.png, summary.md).
    """
    lengths, grid_depths = _check_grid(context_lengths, depths)
    if "{context}" not in template or "{question}" not in template:
        raise PuyuError("the needle prompt template needs {context} and {question} fields")
    meter = length_meter(model, tokenizer, chars_per_token)
    out = Path(out_dir)
    name = str(getattr(model, "name", "model"))
    expected = answer if isinstance(answer, str) else list(answer)
    fingerprint = _fingerprint(
        model=name,
        haystack=hashlib.sha256(haystack_text.encode()).hexdigest(),
        needle=needle,
        question=question,
        answer=expected,
        chat=chat,
        max_tokens=max_tokens,
        template=template,
        meter=type(meter).__name__,
        chars_per_token=getattr(meter, "chars_per_token", None),
    )
    cache_path = out / "cells.json"
    cells = _load_cache(cache_path, fingerprint)
    max_length = int(getattr(model, "max_length", 0) or 0)
    params = greedy_params(max_tokens)
    wrapper = _wrapper_tokens(model, meter, chat)
    # The shortest prompt that still holds some filler: instructions, question, needle and template.
    floor = wrapper + meter.count(_render(template, "", question)) + meter.count(needle) + 2
    todo = [(n, d) for n in lengths for d in grid_depths if _cell_key(n, d) not in cells]
    filler = fill_haystack(haystack_text, max(n for n, _ in todo), meter) if todo else ""
    total = len(lengths) * len(grid_depths)
    with tqdm(total=total, initial=total - len(todo), desc=f"needle {name}", unit="cell", disable=not progress) as bar:
        for length in lengths:
            batch = [d for n, d in todo if n == length]
            if not batch:
                continue
            reason = ""
            if max_length and length + max_tokens > max_length:
                reason = f"needs {length} + {max_tokens} answer tokens > the model's max_length {max_length}"
            elif length < floor:
                reason = f"shorter than the prompt without filler ({floor} tokens)"
            if reason:
                for depth in batch:
                    cells[_cell_key(length, depth)] = NeedleCell(length, depth, "skipped", reason=reason)
            else:
                built = [
                    build_context(
                        filler,
                        length=length - wrapper,
                        depth=d,
                        needle=needle,
                        question=question,
                        meter=meter,
                        template=template,
                    )
                    for d in batch
                ]
                responses = _ask(model, [b.prompt for b in built], params, chat)
                for depth, context, response in zip(batch, built, responses, strict=True):
                    score = score_answer(response, expected)
                    depth_seen = round(context.actual_depth, 2)
                    cells[_cell_key(length, depth)] = NeedleCell(
                        length, depth, "ok", score, response, context.tokens + wrapper, depth_seen
                    )
            _save_cache(cache_path, fingerprint, cells)
            bar.update(len(batch))
    ordered = [cells[_cell_key(n, d)] for n in lengths for d in grid_depths]
    report = NeedleReport(name, ordered, out)
    report.files = write_needle_report(report, lengths, grid_depths, needle=needle, question=question)
    return report


def _wrapper_tokens(model: EvalModel, meter: LengthMeter, chat: bool) -> int:
    """Tokens a local model adds around the prompt (chat template turn markers, BOS), so that `length` counts
    what the model really reads; 0 where they cannot be measured (API models)."""
    if not isinstance(meter, TokenizerMeter):
        return 0
    render = getattr(model, "render_chat", None)
    if chat and render is not None:
        return meter.count(render([{"role": "user", "content": ""}]))
    if not chat and getattr(model, "tokenizer", None) is meter.tokenizer:
        return len(meter.tokenizer.encode(""))  # BOS where the tokenizer adds one
    return 0


def _ask(model: EvalModel, prompts: list[str], params: SamplingParams, chat: bool) -> list[str]:
    if chat:
        return list(model.chat([[{"role": "user", "content": p}] for p in prompts], params))
    return list(model.generate(prompts, params))


# ---------------------------------------------------------------------------------------------- reports


def write_needle_report(
    report: NeedleReport, lengths: list[int], depths: list[float], *, needle: str, question: str
) -> dict[str, Path]:
    """Write results.json, results.csv, heatmap.png and summary.md; returns their paths by name."""
    out = report.out_dir
    files = {
        "json": out / "results.json",
        "csv": out / "results.csv",
        "heatmap": out / "heatmap.png",
        "summary": out / "summary.md",
    }
    payload = {
        "model": report.model,
        "needle": needle,
        "question": question,
        "context_lengths": lengths,
        "depths": depths,
        "mean_score": report.mean_score,
        "cells": [asdict(c) for c in report.cells],
    }
    atomic_write_text(files["json"], json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
    buffer = io.StringIO()
    columns = ["length", "depth", "status", "score", "prompt_tokens", "actual_depth", "response", "reason"]
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for cell in report.cells:
        writer.writerow(asdict(cell))
    atomic_write_text(files["csv"], buffer.getvalue())
    draw_heatmap(report.cells, lengths, depths, f"Needle in a haystack: {report.model}", files["heatmap"])
    atomic_write_text(files["summary"], needle_markdown(report, lengths, depths))
    return files


def _grid(cells: list[NeedleCell], lengths: list[int], depths: list[float]) -> list[list[NeedleCell | None]]:
    """Cells as rows (depths) × columns (lengths)."""
    by_key = {_cell_key(c.length, c.depth): c for c in cells}
    return [[by_key.get(_cell_key(n, d)) for n in lengths] for d in depths]


def draw_heatmap(cells: list[NeedleCell], lengths: list[int], depths: list[float], title: str, path: Path) -> Path:
    """A depth × length heatmap of scores (red 0 → green 1), each cell annotated; skipped cells grey."""
    import numpy as np
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.figure import Figure

    grid = _grid(cells, lengths, depths)
    values = np.array([[c.score if c is not None and c.score is not None else np.nan for c in row] for row in grid])
    cmap = LinearSegmentedColormap.from_list("needle", ["#d7301f", "#fdcc8a", "#1a9850"]).with_extremes(bad="#d9d9d9")
    figure = Figure(figsize=(max(5.0, 1.0 + 0.9 * len(lengths)), max(3.5, 1.2 + 0.5 * len(depths))), dpi=110)
    ax = figure.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    for row, depth_cells in enumerate(grid):
        for col, cell in enumerate(depth_cells):
            label = "skip" if cell is None or cell.score is None else f"{cell.score:.2f}"
            ax.text(col, row, label, ha="center", va="center", fontsize=8, color="black")
    ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{d:g}%" for d in depths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth")
    ax.set_title(title)
    figure.colorbar(image, ax=ax, label="score")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def needle_markdown(report: NeedleReport, lengths: list[int], depths: list[float]) -> str:
    """Markdown summary: a depth × length score table with per-length means."""
    grid = _grid(report.cells, lengths, depths)

    def fmt(value: float | None) -> str:
        return "skip" if value is None else f"{value:.2f}"

    lines = [
        f"## Needle in a haystack: {report.model}",
        "",
        "| depth | " + " | ".join(str(n) for n in lengths) + " |",
        "| --- | " + " | ".join("---:" for _ in lengths) + " |",
    ]
    for depth, row in zip(depths, grid, strict=True):
        lines.append(f"| {depth:g}% | " + " | ".join(fmt(c.score if c else None) for c in row) + " |")
    means = []
    for col in range(len(lengths)):
        scores = [row[col].score for row in grid if row[col] is not None and row[col].score is not None]
        means.append(sum(scores) / len(scores) if scores else None)
    lines.append("| **mean** | " + " | ".join(fmt(m) for m in means) + " |")
    skipped = [c for c in report.cells if c.status == "skipped"]
    lines += ["", f"Mean score: {fmt(report.mean_score)} over {len(report.cells) - len(skipped)} cells."]
    if skipped:
        reasons = [f"{n} tokens: {reason}" for n, reason in sorted({(c.length, c.reason) for c in skipped})]
        lines.append(f"Skipped {len(skipped)} cells ({'; '.join(reasons)}).")
    return "\n".join(lines) + "\n"
