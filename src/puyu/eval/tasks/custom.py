"""Tasks described by a YAML file over a user's JSONL or CSV:

name: world_facts
type: multiple_choice            # | generation | perplexity
path: eval/mc.jsonl              # relative to the YAML file; .jsonl or .csv
fields: {question: question, choices: choices, answer: answer}   # record keys (choices: a key or a list of columns)
metric: accuracy                 # | exact_match | contains | numeric_match (perplexity: perplexity)
chat: auto                       # | true | false
shots: 0                         # first records of shots_path (default: of path, then not scored)
prompt: "Question: {question}\\nAnswer:"
dimension: knowledge
options_in_prompt: true          # multiple choice: list "A. …" in the prompt and score the letters
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import yaml

from puyu.errors import PuyuError
from puyu.eval.tasks.base import DIMENSIONS, Doc, Task, TaskFormatError, iter_jsonl, letter_index, take

KEYS = {
    "name",
    "type",
    "path",
    "fields",
    "metric",
    "chat",
    "shots",
    "shots_path",
    "prompt",
    "dimension",
    "options_in_prompt",
    "stop",
    "max_tokens",
    "description",
}
METRICS = {
    "multiple_choice": {"accuracy"},
    "generation": {"exact_match", "contains", "numeric_match", "accuracy"},
    "perplexity": {"perplexity"},
}
DEFAULT_METRIC = {"multiple_choice": "accuracy", "generation": "exact_match", "perplexity": "perplexity"}


def _records(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise TaskFormatError(f"{path}: file not found")
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return list(csv.DictReader(handle))
    return [record for _, record in iter_jsonl(path, layout="one JSON object per line")]


def _field(record: dict[str, Any], key: str, where: str) -> Any:
    if key not in record:
        raise TaskFormatError(f"{where}: record has no field {key!r}")
    return record[key]


def _choices(record: dict[str, Any], spec: str | list[str], where: str) -> list[str]:
    if isinstance(spec, list):
        return [str(_field(record, column, where)) for column in spec]
    value = _field(record, spec, where)
    if not isinstance(value, list) or not value:
        raise TaskFormatError(f"{where}: field {spec!r} must be a non-empty list of options")
    return [str(v) for v in value]


def _gold_index(answer: Any, choices: list[str], where: str) -> int:
    if isinstance(answer, int) and not isinstance(answer, bool):
        if not 0 <= answer < len(choices):
            raise TaskFormatError(f"{where}: answer index {answer} out of range for {len(choices)} options")
        return answer
    text = str(answer).strip()
    if text.isdigit() and len(choices) <= 10 and len(text) == 1 and text not in choices:
        return _gold_index(int(text), choices, where)
    if len(text) == 1 and text.isalpha():
        return letter_index(text, len(choices), where)
    if text in choices:
        return choices.index(text)
    raise TaskFormatError(f"{where}: answer {answer!r} is neither an option letter, a 0-based index nor an option")


def load_custom(yaml_path: str | Path, *, shots: int | None = None, limit: int | None = None) -> Task:
    """A `Task` from a YAML task file (see the module docstring)."""
    yaml_path = Path(yaml_path)
    if not yaml_path.is_file():
        raise PuyuError(f"{yaml_path}: task file not found")
    spec = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict):
        raise PuyuError(f"{yaml_path}: a task file is a YAML mapping")
    unknown = sorted(set(spec) - KEYS)
    if unknown:
        raise PuyuError(f"{yaml_path}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})")
    kind = spec.get("type", "multiple_choice")
    if kind not in METRICS:
        raise PuyuError(f"{yaml_path}: type must be one of {', '.join(METRICS)}, got {kind!r}")
    metric = spec.get("metric", DEFAULT_METRIC[kind])
    if metric not in METRICS[kind]:
        raise PuyuError(
            f"{yaml_path}: metric {metric!r} does not apply to {kind} (use {', '.join(sorted(METRICS[kind]))})"
        )
    if "path" not in spec:
        raise PuyuError(f"{yaml_path}: 'path' (the data file) is required")
    dimension = spec.get("dimension", "knowledge")
    if dimension not in DIMENSIONS:
        raise PuyuError(f"{yaml_path}: dimension must be one of {', '.join(DIMENSIONS)}")
    chat = {"auto": None, True: True, False: False, "true": True, "false": False}.get(spec.get("chat", "auto"))
    fields = {"question": "question", "choices": "choices", "answer": "answer", "text": "text", "id": "id"}
    fields.update(spec.get("fields") or {})
    in_prompt = bool(spec.get("options_in_prompt", True))
    default_prompt = (
        "Question: {question}\n{options}\nAnswer:"
        if kind == "multiple_choice" and in_prompt
        else "Question: {question}\nAnswer:"
    )
    prompt = spec.get("prompt", default_prompt)
    data_path = (yaml_path.parent / spec["path"]).resolve()
    records = _records(data_path)
    n_shots = int(spec.get("shots", 0) if shots is None else shots)
    if "shots_path" in spec:
        shot_records = _records((yaml_path.parent / spec["shots_path"]).resolve())[:n_shots]
    else:
        shot_records, records = records[:n_shots], records[n_shots:]

    def to_doc(number: int, record: dict[str, Any]) -> Doc:
        where = f"{data_path}:{number + 1}"
        values = {k: v for k, v in record.items() if isinstance(k, str)}
        if kind == "perplexity":
            return Doc(id=str(record.get(fields["id"], number)), text=str(_field(record, fields["text"], where)))
        values["question"] = str(_field(record, fields["question"], where))
        answer = _field(record, fields["answer"], where)
        if kind == "multiple_choice":
            options = _choices(record, fields["choices"], where)
            gold = _gold_index(answer, options, where)
            letters = [chr(ord("A") + i) for i in range(len(options))]
            values["options"] = "\n".join(f"{ltr}. {opt}" for ltr, opt in zip(letters, options, strict=True))
            choices = letters if in_prompt else options
        else:
            choices, gold = [], str(answer)
        try:
            query = prompt.format(**values)
        except (KeyError, IndexError) as exc:
            raise TaskFormatError(f"{yaml_path}: prompt names {exc} which the record at {where} lacks") from None
        return Doc(id=str(record.get(fields["id"], number)), query=query, choices=choices, gold=gold)

    pairs = []
    for number, record in enumerate(shot_records):
        doc = to_doc(number, record)
        if kind == "multiple_choice":
            pairs.append((doc.query, doc.choices[int(doc.gold)]))  # type: ignore[arg-type]
        elif kind == "generation":
            pairs.append((doc.query, str(doc.gold)))
    docs = [to_doc(number + (0 if "shots_path" in spec else n_shots), r) for number, r in enumerate(records)]
    for doc in docs:
        doc.shots, doc.description = pairs, str(spec.get("description", ""))
    stop = spec.get("stop", ["\n\n", "Question:"])
    return Task(
        name=str(spec.get("name", yaml_path.stem)),
        kind=kind,
        docs=take(docs, limit),
        dimension=dimension,
        metric=metric,
        stop=list(stop),
        max_tokens=int(spec.get("max_tokens", 64)),
        chat=chat,
        extractor="gsm8k" if metric == "numeric_match" else ("choice" if in_prompt else "text"),
    )
