from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from eval_support import CMMLU_ROWS, GSM8K, MMLU_ROWS, write_mmlu

from puyu.errors import PuyuError
from puyu.eval.prompts import build_prompt
from puyu.eval.tasks import TaskFormatError, load_task
from puyu.eval.tasks.custom import load_custom


def test_mmlu_prompt_is_lm_eval_default(bench_data: Path) -> None:
    task = load_task("mmlu_astronomy", data_dir=bench_data, shots=1)
    assert [d.gold for d in task.docs] == [1, 2, 0]
    prompt = build_prompt(task, task.docs[1], chat=False)
    assert prompt.text == (
        "The following are multiple choice questions (with answers) about astronomy.\n\n"
        "What is 2 + 3?\nA. 4\nB. 5\nC. 6\nD. 7\nAnswer: B\n\n"
        "Which planet is known as the red planet?\nA. Venus\nB. Earth\nC. Mars\nD. Jupiter\nAnswer:"
    )
    assert prompt.continuations == [" A", " B", " C", " D"]
    assert task.dimension == "examination" and task.kind == "multiple_choice"


def test_mmlu_all_subjects_with_limit_per_subject(bench_data: Path) -> None:
    task = load_task("mmlu", data_dir=bench_data, limit=2, shots=0)
    assert task.subjects == ["astronomy", "college_math"]
    assert len(task.docs) == 4
    assert 'Pick the "quoted, comma" option.' not in [d.query.split("\n")[0] for d in task.docs]
    full = load_task("mmlu", data_dir=bench_data / "mmlu", shots=0)  # the benchmark folder itself also works
    assert full.docs[2].query.startswith('Pick the "quoted, comma" option.\nA. x, y\n')


def test_cmmlu_and_ceval(bench_data: Path) -> None:
    cmmlu = load_task("cmmlu", data_dir=bench_data, shots=1)
    assert [d.gold for d in cmmlu.docs] == [1, 2]
    assert cmmlu.docs[0].query == "1+1等于几？\nA. 1\nB. 2\nC. 3\nD. 4\n答案："
    assert cmmlu.docs[0].shots == [(cmmlu.docs[0].query, "B")]
    assert (
        cmmlu.docs[0].description == "以下是关于农学的单项选择题，请直接给出正确答案的选项。\n\n"
    )  # lm-eval's wording
    ceval = load_task("ceval_law", data_dir=bench_data, shots=0)
    assert [d.id for d in ceval.docs] == ["law/0", "law/1"] and ceval.docs[1].gold == 2
    assert ceval.docs[0].description == "以下是中国关于法学的单项选择题，请选出其中的正确答案。\n\n"


def test_gsm8k_arc_hellaswag(bench_data: Path) -> None:
    gsm = load_task("gsm8k", data_dir=bench_data, shots=2)
    assert [d.gold for d in gsm.docs] == ["7", "234", "42"]
    assert gsm.docs[0].shots[1] == (f"Question: {GSM8K[1]['question']}\nAnswer:", GSM8K[1]["answer"])
    assert gsm.kind == "generation" and gsm.dimension == "reasoning" and "Question:" in gsm.stop
    arc = load_task("arc_challenge", data_dir=bench_data)
    assert arc.docs[0].query == "Question: Which is a mammal?\nAnswer:"
    assert arc.docs[1].choices == ["50 C", "100 C", "0 C", "10 C"] and arc.docs[1].gold == 1
    assert load_task("arc_easy", data_dir=bench_data).dimension == "knowledge"
    hs = load_task("hellaswag", data_dir=bench_data)
    doc = hs.docs[0]
    # lm-eval's preprocessing: ctx_a + " " + ctx_b.capitalize(), "[title]" → ". ", brackets removed
    assert doc.query == "Removing ice from car: Then, the man writes over the snow. Then"
    assert doc.choices[0] == ", the man adds wax. to the windshield." and doc.gold == 3
    assert hs.dimension == "understanding"


def test_missing_or_malformed_files_name_the_layout(tmp_path: Path, bench_data: Path) -> None:
    with pytest.raises(TaskFormatError, match=r"MMLU layout: \{dev,val,test\}/<subject>_<split>.csv"):
        load_task("mmlu", data_dir=tmp_path)
    bad = tmp_path / "cmmlu" / "test"
    bad.mkdir(parents=True)
    (bad / "x.csv").write_text("q,a\n1,2\n", encoding="utf-8")
    with pytest.raises(TaskFormatError, match="CMMLU layout"):
        load_task("cmmlu", data_dir=tmp_path, shots=0)
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text('{"question": "q", "answer": "no marker"}\n', encoding="utf-8")
    with pytest.raises(TaskFormatError, match="####"):
        load_task("gsm8k", data_dir=tmp_path, shots=0)
    with pytest.raises(PuyuError, match="unknown task"):
        load_task("nonsense", data_dir=bench_data)
    with pytest.raises(TaskFormatError, match=r"dev/nothere_dev\.csv"):
        load_task("mmlu_nothere", data_dir=bench_data)


def test_yaml_multiple_choice_over_quickstart_format(tmp_path: Path) -> None:
    records = [
        {"question": "Capital of Zorbia?", "choices": ["Quill", "Marn", "Tess"], "answer": "B", "id": "w1"},
        {"question": "Zorbia's river?", "choices": ["Ell", "Ost"], "answer": "A", "id": "w2"},
    ]
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (tmp_path / "task.yaml").write_text(
        "name: world_facts\ntype: multiple_choice\npath: eval/mc.jsonl\n"
        "fields: {question: question, choices: choices, answer: answer}\nmetric: accuracy\nchat: false\n",
        encoding="utf-8",
    )
    task = load_custom(tmp_path / "task.yaml")
    assert task.name == "world_facts" and task.chat is False
    assert [d.id for d in task.docs] == ["w1", "w2"] and [d.gold for d in task.docs] == [1, 0]
    assert task.docs[0].query == "Question: Capital of Zorbia?\nA. Quill\nB. Marn\nC. Tess\nAnswer:"
    assert task.docs[0].choices == ["A", "B", "C"]


def test_yaml_generation_over_csv_with_shots(tmp_path: Path) -> None:
    with (tmp_path / "qa.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["q", "a"], ["2+2?", "4"], ["3+3?", "6"], ["4+4?", "8"]])
    (tmp_path / "qa.yaml").write_text(
        "type: generation\npath: qa.csv\nfields: {question: q, answer: a}\nmetric: numeric_match\nshots: 1\n"
        'prompt: "Q: {question}\\nA:"\n',
        encoding="utf-8",
    )
    task = load_custom(tmp_path / "qa.yaml")
    assert task.name == "qa" and [d.gold for d in task.docs] == ["6", "8"]  # the shot is not scored
    assert task.docs[0].shots == [("Q: 2+2?\nA:", "4")] and task.extractor == "gsm8k"


def test_yaml_errors(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"question": "q", "choices": ["a"], "answer": "C"}\n', encoding="utf-8")
    (tmp_path / "t.yaml").write_text("path: d.jsonl\nmetrc: accuracy\n", encoding="utf-8")
    with pytest.raises(PuyuError, match="unknown keys metrc"):
        load_custom(tmp_path / "t.yaml")
    (tmp_path / "t.yaml").write_text("path: d.jsonl\n", encoding="utf-8")
    with pytest.raises(TaskFormatError, match="not one of the 1 option letters"):
        load_custom(tmp_path / "t.yaml")


def test_real_mmlu(shared_data: Path) -> None:
    task = load_task("mmlu_abstract_algebra", data_dir=shared_data, shots=5)
    assert len(task.docs) == 100 and len(task.docs[0].shots) == 5
    assert task.docs[0].query.startswith("Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18))")
    assert task.docs[0].gold == 1
    with open(shared_data / "mmlu" / "test" / "abstract_algebra_test.csv", newline="", encoding="utf-8") as handle:
        assert sum(1 for _ in csv.reader(handle)) == 100


def test_real_cmmlu(shared_data: Path) -> None:
    task = load_task("cmmlu_agronomy", data_dir=shared_data, shots=5)
    with open(shared_data / "cmmlu" / "test" / "agronomy.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(task.docs) == len(rows) == 169
    assert task.docs[0].query.startswith(rows[0]["Question"].strip())
    assert task.docs[0].gold == "ABCD".index(rows[0]["Answer"])


def test_real_gsm8k(shared_data: Path) -> None:
    task = load_task("gsm8k", data_dir=shared_data)
    assert len(task.docs) == 1319 and task.docs[0].gold == "18"
    assert task.docs[0].query.startswith("Question: Janet")


def test_fixture_layout_matches_the_real_files(shared_data: Path, tmp_path: Path) -> None:
    # The fixture writer and the real release agree on file naming and headers.
    write_mmlu(tmp_path)
    assert sorted(p.name for p in (tmp_path / "test").iterdir())[0].endswith("_test.csv")
    assert (shared_data / "mmlu" / "test" / "abstract_algebra_test.csv").is_file()
    header = (shared_data / "cmmlu" / "test" / "agronomy.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == ",Question,A,B,C,D,Answer"
    assert len(MMLU_ROWS[0]) == 6 and len(CMMLU_ROWS[0]) == 6
