"""Small benchmark files in the exact layouts of the real releases, and a tiny model folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from puyu.model.init import init_model_folder

MMLU_ROWS = [
    ["What is 2 + 3?", "4", "5", "6", "7", "B"],
    ["Which planet is known as the red planet?", "Venus", "Earth", "Mars", "Jupiter", "C"],
    ['Pick the "quoted, comma" option.', "x, y", "z", "w", "v", "A"],
]
CMMLU_ROWS = [["1+1等于几？", "1", "2", "3", "4", "B"], ["中国的首都是哪里？", "上海", "广州", "北京", "深圳", "C"]]
GSM8K = [
    {
        "question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
        "answer": "Tom has 3 + 4 = <<3+4=7>>7 apples.\n#### 7",
    },
    {
        "question": "A box holds 1,000 pens; 766 are sold. How many remain?",
        "answer": "1,000 - 766 = <<1000-766=234>>234 pens remain.\n#### 234",
    },
    {"question": "What is 6 times 7?", "answer": "6 * 7 = <<6*7=42>>42\n#### 42"},
]


def _write_csv(path: Path, rows: list[list[str]], header: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if header:
            writer.writerow(header)
        writer.writerows(rows)


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def write_mmlu(root: Path, subjects: tuple[str, ...] = ("astronomy", "college_math")) -> Path:
    for subject in subjects:
        for split in ("dev", "val", "test"):
            _write_csv(root / split / f"{subject}_{split}.csv", MMLU_ROWS)
    return root


def write_cmmlu(root: Path) -> Path:
    header = ["", "Question", "A", "B", "C", "D", "Answer"]
    for split in ("dev", "test"):
        _write_csv(root / split / "agronomy.csv", [[str(i), *row] for i, row in enumerate(CMMLU_ROWS)], header)
    return root


def write_ceval(root: Path) -> Path:
    header = ["id", "question", "A", "B", "C", "D", "answer", "explanation"]
    for split in ("dev", "val"):
        rows = [[str(i), *row, "因为如此"] for i, row in enumerate(CMMLU_ROWS)]
        _write_csv(root / split / f"law_{split}.csv", rows, header)
    return root


def write_gsm8k(root: Path) -> Path:
    _write_jsonl(root / "train.jsonl", GSM8K)
    _write_jsonl(root / "test.jsonl", GSM8K)
    return root


def write_arc(root: Path) -> Path:
    records = [
        {
            "id": "Mercury_1",
            "question": {
                "stem": "Which is a mammal?",
                "choices": [
                    {"text": "shark", "label": "A"},
                    {"text": "whale", "label": "B"},
                    {"text": "trout", "label": "C"},
                ],
            },
            "answerKey": "B",
        },
        {
            "id": "Mercury_2",
            "question": {
                "stem": "Water boils at?",
                "choices": [
                    {"text": "50 C", "label": "1"},
                    {"text": "100 C", "label": "2"},
                    {"text": "0 C", "label": "3"},
                    {"text": "10 C", "label": "4"},
                ],
            },
            "answerKey": "2",
        },
    ]
    for level in ("Challenge", "Easy"):
        for split in ("Train", "Test"):
            _write_jsonl(root / f"ARC-{level}" / f"ARC-{level}-{split}.jsonl", records)
    return root


def write_hellaswag(root: Path) -> Path:
    records = [
        {
            "ind": 4,
            "activity_label": "Removing ice from car",
            "ctx_a": "Then, the man writes over the snow.",
            "ctx_b": "then",
            "ctx": "Then, the man writes over the snow. then",
            "split": "val",
            "split_type": "indomain",
            "endings": [
                ", the man adds wax [title] to the windshield.",
                ", a woman is seen.",
                ", the man puts on a hat.",
                ", the man drives.",
            ],
            "label": 3,
            "source_id": "activitynet~v_-1IBHYS3L-Y",
        },
    ]
    _write_jsonl(root / "hellaswag_val.jsonl", records)
    _write_jsonl(root / "hellaswag_train.jsonl", records)
    return root


def write_all(root: Path) -> Path:
    write_mmlu(root / "mmlu")
    write_cmmlu(root / "cmmlu")
    write_ceval(root / "ceval")
    write_gsm8k(root / "gsm8k")
    write_arc(root / "arc")
    write_hellaswag(root / "hellaswag")
    return root


def make_model(out: Path, preset: str = "internlm2-tiny", **overrides: object) -> Path:
    """A random tiny model folder (hidden 64, 2 layers) with a byte-level tokenizer."""
    return init_model_folder(preset, out, overrides=dict(overrides), dtype="float32")
