"""LLM-as-a-judge: a judge model grades answers (MT-Bench style).

Two modes:
- single: the judge rates each answer 1-10 and ends with "[[rating]]"; a `reference` answer, when given,
  turns it into reference-guided grading.
- pairwise: the judge compares answers A and B and ends with "[[A]]", "[[B]]" or "[[C]]" (tie). Each pair is
  judged twice with the positions swapped; a verdict counts only when both orders agree, otherwise the pair
  is a tie (this cancels the judge's position bias).

The judge is any `EvalModel` (`puyu.eval.models`): an OpenAI-compatible endpoint or a local model folder.
Judgments go to `judgments.jsonl` (rewritten atomically after each batch, so an interrupted run resumes where it
stopped), with `summary.json` and `summary.md` beside it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from puyu.errors import PuyuError
from puyu.eval.models import EvalModel, greedy_params
from puyu.generation.sampling import SamplingParams
from puyu.io import atomic_write_text

SINGLE_SYSTEM = "You are a careful and impartial judge of answers written by AI assistants."
SINGLE_PROMPT = (
    "[Instruction]\n"
    "Act as an impartial judge and rate the response an AI assistant gave to the user question below. "
    "Weigh its helpfulness, relevance, accuracy, depth and level of detail. Start with a short explanation and "
    "be as objective as possible. Then rate the response on a scale of 1 to 10, written strictly in this "
    'format: "[[rating]]", for example "Rating: [[6]]".\n\n'
    "[Question]\n{question}\n\n"
    "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
)
SINGLE_REFERENCE_PROMPT = (
    "[Instruction]\n"
    "Act as an impartial judge and rate the response an AI assistant gave to the user question below. "
    "A reference answer is provided: compare the assistant's answer with it, and treat correctness as what "
    "matters most. Start with a short explanation that points out any mistakes and be as objective as possible. "
    'Then rate the response on a scale of 1 to 10, written strictly in this format: "[[rating]]", for example '
    '"Rating: [[6]]".\n\n'
    "[Question]\n{question}\n\n"
    "[The Start of Reference Answer]\n{reference}\n[The End of Reference Answer]\n\n"
    "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
)
PAIRWISE_SYSTEM = (
    "Act as an impartial judge and compare the responses two AI assistants gave to the user question below. "
    "Choose the assistant that follows the user's instructions and answers the question better, weighing "
    "helpfulness, relevance, accuracy, depth and level of detail. Start by comparing the two responses and give "
    "a short explanation. The order in which the responses appear must not affect your decision, nor their "
    "length, nor the assistants' names; be as objective as possible. After the explanation, give your final "
    'verdict strictly in this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and '
    '"[[C]]" for a tie.'
)
PAIRWISE_PROMPT = (
    "[User Question]\n{question}\n\n"
    "{reference_block}"
    "[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)
REFERENCE_BLOCK = "[The Start of Reference Answer]\n{reference}\n[The End of Reference Answer]\n\n"

QUESTION_FIELDS = ("question", "prompt", "instruction")
ANSWER_FIELDS = ("answer", "prediction", "response", "output")


# ---------------------------------------------------------------------------------------------- prompts


def single_messages(question: str, answer: str, reference: str | None = None) -> list[dict[str, str]]:
    """The chat messages asking the judge to rate one answer 1-10 (reference-guided when `reference` is given)."""
    if reference:
        user = SINGLE_REFERENCE_PROMPT.format(question=question, answer=answer, reference=reference)
    else:
        user = SINGLE_PROMPT.format(question=question, answer=answer)
    return [{"role": "system", "content": SINGLE_SYSTEM}, {"role": "user", "content": user}]


def pairwise_messages(
    question: str, answer_a: str, answer_b: str, reference: str | None = None
) -> list[dict[str, str]]:
    """The chat messages asking the judge which of two answers (shown as A, then B) is better."""
    block = REFERENCE_BLOCK.format(reference=reference) if reference else ""
    user = PAIRWISE_PROMPT.format(question=question, answer_a=answer_a, answer_b=answer_b, reference_block=block)
    return [{"role": "system", "content": PAIRWISE_SYSTEM}, {"role": "user", "content": user}]


# ---------------------------------------------------------------------------------------------- parsing

_NUMBER = r"(\d+(?:\.\d+)?)"
# Most specific first; within a pattern the last match wins (a judge may quote the format before answering).
_RATING_PATTERNS = (
    re.compile(r"\[\[\s*" + _NUMBER + r"\s*(?:/\s*10\s*)?\]\]"),
    re.compile(r"\[\s*" + _NUMBER + r"\s*(?:/\s*10\s*)?\]"),
    re.compile(r"\b(?:rating|score)\s*(?:is|of)?\s*[:：=]?\s*" + _NUMBER, re.IGNORECASE),
    re.compile(_NUMBER + r"\s*(?:/|out of)\s*10\b", re.IGNORECASE),
)
_VERDICT_PATTERNS = (
    re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE),
    re.compile(r"\[\s*(A|B|C)\s*\]"),
    re.compile(r"\bverdict\s*(?:is)?\s*[:：]?\s*[\"']?(?:assistant\s+)?(A|B|C|tie)\b", re.IGNORECASE),
)


def parse_rating(text: str, low: float = 1.0, high: float = 10.0) -> float | None:
    """The rating a judge gave, or None when it gave none in `[low, high]`.

    Reads "[[7]]" first, then "[7]", "Rating: 7" and "7/10"; markdown emphasis is ignored.
    """
    text = text.replace("*", "")
    for pattern in _RATING_PATTERNS:
        matches = pattern.findall(text)
        if matches:
            value = float(matches[-1])
            return value if low <= value <= high else None
    return None


def parse_verdict(text: str) -> str | None:
    """The verdict a pairwise judge gave: "A", "B", "C" (tie), or None when it gave none."""
    text = text.replace("*", "")
    for pattern in _VERDICT_PATTERNS:
        matches = pattern.findall(text)
        if matches:
            verdict = matches[-1].upper()
            return "C" if verdict == "TIE" else verdict
    return None


def combine_verdicts(first: str | None, swapped: str | None) -> tuple[str, bool]:
    """Merge the verdicts on (a, b) and on the swapped order (b, a).

    Returns:
        (winner, consistent): winner is "a", "b", "tie" or "error" (a verdict missing); when the two orders
        disagree the pair is a tie and `consistent` is False.
    """
    if first is None or swapped is None:
        return "error", False
    winner_first = {"A": "a", "B": "b", "C": "tie"}[first]
    winner_swapped = {"A": "b", "B": "a", "C": "tie"}[swapped]
    if winner_first == winner_swapped:
        return winner_first, True
    return "tie", False


# ---------------------------------------------------------------------------------------------- inputs


@dataclass
class JudgeItem:
    """One thing to judge: a question with one answer (single) or two (pairwise)."""

    id: str
    question: str
    answer: str = ""
    answer_b: str = ""
    reference: str | None = None


def _pick(record: dict[str, Any], names: Sequence[str], where: str, what: str) -> str:
    for name in names:
        value = record.get(name)
        if isinstance(value, str):
            return value
    raise PuyuError(f"{where}: no {what} field (expected one of {', '.join(names)})")


def _read_records(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """(location, record) of every non-blank line of a JSONL file."""
    file = Path(path)
    if not file.is_file():
        raise PuyuError(f"{file}: no such file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PuyuError(f"{file}: not UTF-8 text (byte {exc.start}); expected JSON Lines") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{file}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PuyuError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise PuyuError(f"{where}: expected a JSON object")
        records.append((where, record))
    if not records:
        raise PuyuError(f"{file}: no records")
    return records


def _item_id(record: dict[str, Any], index: int) -> str:
    value = record.get("id")
    return str(value) if value is not None else str(index)


def load_single_items(path: str | Path) -> list[JudgeItem]:
    """Items from a JSONL of {question, answer} (aliases: prompt/instruction, prediction/response/output),
    with optional `id` and `reference`."""
    items = []
    for index, (where, record) in enumerate(_read_records(path)):
        question = _pick(record, QUESTION_FIELDS, where, "question")
        answer = _pick(record, ANSWER_FIELDS, where, "answer")
        reference = record.get("reference") if isinstance(record.get("reference"), str) else None
        items.append(JudgeItem(_item_id(record, index), question, answer, reference=reference))
    _check_unique(items, path)
    return items


def load_pairwise_items(path: str | Path, against: str | Path | None = None) -> list[JudgeItem]:
    """Pairs from one JSONL of {question, answer_a, answer_b}, or from two prediction files (`path` gives
    answer A, `against` answer B) matched by `id` when every record has one, else by line order."""
    if against is None:
        items = []
        for index, (where, record) in enumerate(_read_records(path)):
            question = _pick(record, QUESTION_FIELDS, where, "question")
            answer_a = _pick(record, ("answer_a",), where, "answer_a")
            answer_b = _pick(record, ("answer_b",), where, "answer_b")
            reference = record.get("reference") if isinstance(record.get("reference"), str) else None
            items.append(JudgeItem(_item_id(record, index), question, answer_a, answer_b, reference))
        _check_unique(items, path)
        return items
    first, second = load_single_items(path), load_single_items(against)
    by_id = {item.id: item for item in second}
    if len(first) != len(second):
        raise PuyuError(f"{path} has {len(first)} answers but {against} has {len(second)}")
    pairs = []
    for item in first:
        other = by_id.get(item.id)
        if other is None:
            raise PuyuError(f"{against}: no answer with id {item.id!r}")
        if other.question.strip() != item.question.strip():
            raise PuyuError(f"id {item.id!r}: the question differs between {path} and {against}")
        pairs.append(JudgeItem(item.id, item.question, item.answer, other.answer, item.reference or other.reference))
    return pairs


def _check_unique(items: list[JudgeItem], path: str | Path) -> None:
    duplicates = [key for key, n in Counter(item.id for item in items).items() if n > 1]
    if duplicates:
        raise PuyuError(f"{path}: duplicate id {duplicates[0]!r}")


# ---------------------------------------------------------------------------------------------- running


@dataclass
class JudgeReport:
    """A finished judging run: per-item records, the summary, and the files written."""

    mode: str
    judge: str
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


def _key(judge: str, mode: str, item: JudgeItem, params: SamplingParams) -> str:
    """Identifies a judgment: the same item, judge and settings give the same key (so it can be reused)."""
    blob = json.dumps(
        [judge, mode, item.question, item.answer, item.answer_b, item.reference, params.max_tokens, params.temperature],
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _load_done(path: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by an interrupted write is simply judged again
        if isinstance(record, dict) and isinstance(record.get("key"), str):
            done[record["key"]] = record
    return done


def _judge_batch(judge: EvalModel, mode: str, items: list[JudgeItem], params: SamplingParams) -> list[dict[str, Any]]:
    if mode == "single":
        conversations = [single_messages(i.question, i.answer, i.reference) for i in items]
        outputs = judge.chat(conversations, params)
        return [
            {"id": item.id, "score": parse_rating(text), "judgment": text}
            for item, text in zip(items, outputs, strict=True)
        ]
    conversations = []
    for item in items:
        conversations.append(pairwise_messages(item.question, item.answer, item.answer_b, item.reference))
        conversations.append(pairwise_messages(item.question, item.answer_b, item.answer, item.reference))
    outputs = judge.chat(conversations, params)
    records = []
    for index, item in enumerate(items):
        first_text, swapped_text = outputs[2 * index], outputs[2 * index + 1]
        first, swapped = parse_verdict(first_text), parse_verdict(swapped_text)
        winner, consistent = combine_verdicts(first, swapped)
        records.append(
            {
                "id": item.id,
                "winner": winner,
                "consistent": consistent,
                "verdict_ab": first,
                "verdict_ba": swapped,
                "judgment_ab": first_text,
                "judgment_ba": swapped_text,
            }
        )
    return records


def judge_items(
    judge: EvalModel,
    items: Sequence[JudgeItem],
    *,
    mode: str,
    out_dir: str | Path,
    params: SamplingParams | None = None,
    batch_size: int = 16,
    names: tuple[str, str] = ("A", "B"),
    progress: bool = True,
) -> JudgeReport:
    """Judge every item, reusing judgments already in `out_dir/judgments.jsonl`.

    Args:
        judge: an `EvalModel`; only its `chat` and `name` are used.
        items: from `load_single_items` / `load_pairwise_items`.
        mode: "single" or "pairwise".
        out_dir: output folder (judgments.jsonl, summary.json, summary.md).
        params: judge sampling; default greedy with up to 512 tokens.
        batch_size: items sent to the judge per call (pairwise sends two conversations per item).
        names: labels of the two sides in pairwise reports.
        progress: show a progress bar.
    """
    if mode not in ("single", "pairwise"):
        raise PuyuError(f"judge mode must be 'single' or 'pairwise', got {mode!r}")
    if batch_size < 1:
        raise PuyuError(f"batch_size must be at least 1, got {batch_size}")
    params = params or greedy_params(512)
    name = str(getattr(judge, "name", "judge"))
    out = Path(out_dir)
    path = out / "judgments.jsonl"
    done = _load_done(path)
    keyed = [(_key(name, mode, item, params), item) for item in items]
    results: dict[str, dict[str, Any]] = {key: done[key] for key, _ in keyed if key in done}
    todo = [(key, item) for key, item in keyed if key not in results]
    with tqdm(total=len(keyed), initial=len(keyed) - len(todo), desc=f"judge {mode}", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            for (key, item), record in zip(
                chunk, _judge_batch(judge, mode, [i for _, i in chunk], params), strict=True
            ):
                results[key] = {"key": key, **record, "question": item.question}
            _write_records(path, [results[k] for k, _ in keyed if k in results])
            bar.update(len(chunk))
    records = [results[key] for key, _ in keyed]
    _write_records(path, records)
    summary = summarize_single(records) if mode == "single" else summarize_pairwise(records)
    summary = {"mode": mode, "judge": name, **summary}
    if mode == "pairwise":
        summary["names"] = list(names)
    report = JudgeReport(mode, name, records, summary)
    report.files = {"judgments": path, "summary_json": out / "summary.json", "summary_md": out / "summary.md"}
    atomic_write_text(report.files["summary_json"], json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    atomic_write_text(report.files["summary_md"], judge_markdown(report))
    return report


def run_judge(
    judge: EvalModel,
    input_path: str | Path,
    *,
    mode: str = "single",
    out_dir: str | Path,
    against: str | Path | None = None,
    params: SamplingParams | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> JudgeReport:
    """Load the answers in `input_path` (and `against`, for pairwise from two files) and judge them."""
    if against is not None and mode != "pairwise":
        raise PuyuError("a second answer file only makes sense in pairwise mode")
    if mode == "single":
        items = load_single_items(input_path)
        names = ("A", "B")
    else:
        items = load_pairwise_items(input_path, against)
        names = (Path(input_path).stem, Path(against).stem) if against is not None else ("A", "B")
    return judge_items(
        judge, items, mode=mode, out_dir=out_dir, params=params, batch_size=batch_size, names=names, progress=progress
    )


def _write_records(path: Path, records: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


# ---------------------------------------------------------------------------------------------- summaries


def summarize_single(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Count, mean rating over the parsed ones, unparsed count, and how many got each whole rating."""
    scores = [r["score"] for r in records if r.get("score") is not None]
    histogram = Counter(int(s) for s in scores)
    return {
        "count": len(records),
        "rated": len(scores),
        "errors": len(records) - len(scores),
        "mean_score": sum(scores) / len(scores) if scores else None,
        "histogram": {str(k): histogram[k] for k in sorted(histogram)},
    }


def summarize_pairwise(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Win/tie/loss counts and rates of side A over the decided pairs (errors left out), and how often the
    two orders agreed."""
    counts = Counter(r["winner"] for r in records)
    decided = counts["a"] + counts["b"] + counts["tie"]

    def rate(n: int) -> float | None:
        return n / decided if decided else None

    return {
        "count": len(records),
        "wins": counts["a"],
        "ties": counts["tie"],
        "losses": counts["b"],
        "errors": counts["error"],
        "win_rate": rate(counts["a"]),
        "tie_rate": rate(counts["tie"]),
        "loss_rate": rate(counts["b"]),
        "consistency": rate(sum(1 for r in records if r.get("consistent"))),
    }


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def judge_markdown(report: JudgeReport) -> str:
    """A summary table and a per-item table."""
    s = report.summary
    lines = [f"## LLM-as-judge ({report.mode}), judge: {report.judge}", ""]
    if report.mode == "single":
        mean = "n/a" if s["mean_score"] is None else f"{s['mean_score']:.2f}"
        lines += [
            "| items | rated | unparsed | mean score (1-10) |",
            "| ---: | ---: | ---: | ---: |",
            f"| {s['count']} | {s['rated']} | {s['errors']} | {mean} |",
            "",
            "| id | score | question |",
            "| --- | ---: | --- |",
        ]
        for r in report.records:
            score = "n/a" if r.get("score") is None else f"{r['score']:g}"
            lines.append(f"| {r['id']} | {score} | {_short(r.get('question', ''))} |")
    else:
        a, b = s.get("names", ["A", "B"])
        lines += [
            f"| {a} vs {b} | wins | ties | losses | unparsed | win rate | tie rate | loss rate | consistent |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| pairs: {s['count']} | {s['wins']} | {s['ties']} | {s['losses']} | {s['errors']} | "
            f"{_percent(s['win_rate'])} | {_percent(s['tie_rate'])} | {_percent(s['loss_rate'])} | "
            f"{_percent(s['consistency'])} |",
            "",
            f"| id | winner | {a} shown first | {b} shown first | question |",
            "| --- | --- | --- | --- | --- |",
        ]
        label = {"a": a, "b": b, "tie": "tie", "error": "unparsed"}
        first_order = {"A": a, "B": b, "C": "tie", None: "unparsed"}
        swapped_order = {"A": b, "B": a, "C": "tie", None: "unparsed"}
        for r in report.records:
            lines.append(
                f"| {r['id']} | {label[r['winner']]} | {first_order[r['verdict_ab']]} | "
                f"{swapped_order[r['verdict_ba']]} | {_short(r.get('question', ''))} |"
            )
    return "\n".join(lines) + "\n"
