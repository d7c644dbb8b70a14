"""MMLU log-likelihood evaluation: puyu eval vs lm-evaluation-harness (hf backend), same model, data, prompts.

Same model: a Llama-layout HF folder that transformers loads (random init, fp32): hidden 512, 4 layers,
8 heads / 4 KV heads, vocabulary 32000 (a Llama-2-sized output layer), with a byte-level BPE tokenizer trained
here on the MMLU dev/val questions (so " A" is one token, as with real tokenizers). Built once under
--workdir.

Same data and prompt: the first --limit questions of each --subjects from /work/shared/data/mmlu (test split),
--shots first dev rows as examples. lm-eval gets a local task per subject (dataset_path: csv over the same
headerless files, the prompt, description and choices of its own `mmlu` default template), loaded with
`TaskManager(include_path=...)`; nothing is downloaded (HF_HUB_OFFLINE=1).

How it is timed, one process, after both models are loaded: lm-eval's `simple_evaluate` (task building,
contexts, the model's log-likelihoods, metrics) vs puyu's `load_task` + `evaluate_task` (prompts, the model's
log-likelihoods, metrics; no cache). The order alternates over --repeats; the median counts. Both use
`torch.set_num_threads(--threads)` and the same --batch-size.

Compared: accuracy per subject and overall, and per question the predicted option and the four
log-likelihoods (largest difference).

    flock /tmp/puyu-heavy.lock .venv/bin/python benchmarks/eval_vs_lmeval.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info

SUBJECTS = "abstract_algebra,anatomy,astronomy,high_school_geography"
MODEL = {
    "hidden_size": 512,
    "intermediate_size": 1376,
    "num_layers": 4,
    "num_heads": 8,
    "num_kv_heads": 4,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
}

TASK_YAML = """task: puyu_mmlu_{subject}
dataset_path: csv
dataset_kwargs:
  data_files:
    test: {test}
    dev: {dev}
  column_names: [question, A, B, C, D, answer]
test_split: test
fewshot_split: dev
fewshot_config:
  sampler: first_n
output_type: multiple_choice
description: "The following are multiple choice questions (with answers) about {title}.\\n\\n"
doc_to_text: "{{{{question.strip()}}}}\\nA. {{{{A}}}}\\nB. {{{{B}}}}\\nC. {{{{C}}}}\\nD. {{{{D}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: "{{{{['A', 'B', 'C', 'D'].index(answer)}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def build_model(workdir: Path, mmlu: Path) -> Path:
    """The tokenizer (trained on MMLU dev/val text) and the random Llama-layout model folder, built once."""
    from puyu.model.init import init_model_folder
    from puyu.tokenizer.train import train_bpe

    folder = workdir / "model"
    if (folder / "config.json").is_file():
        return folder
    corpus = workdir / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for split in ("dev", "val"):
        for path in sorted((mmlu / split).glob("*.csv")):
            (corpus / f"{split}_{path.stem}.txt").write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    train_bpe([corpus], 8192, workdir / "tokenizer", chat_tokens="llama3", show_progress=False)
    init_model_folder("llama-tiny", folder, overrides=MODEL, tokenizer_dir=workdir / "tokenizer", dtype="float32")
    return folder


def write_lmeval_tasks(mmlu: Path, subjects: list[str], out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    for subject in subjects:
        text = TASK_YAML.format(
            subject=subject,
            title=subject.replace("_", " "),
            test=mmlu / "test" / f"{subject}_test.csv",
            dev=mmlu / "dev" / f"{subject}_dev.csv",
        )
        (out / f"puyu_mmlu_{subject}.yaml").write_text(text, encoding="utf-8")
    return [f"puyu_mmlu_{s}" for s in subjects]


def run_lmeval(lm: object, names: list[str], include: Path, shots: int, limit: int) -> tuple[float, dict]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    start = time.perf_counter()
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=names,
        num_fewshot=shots,
        limit=limit,
        task_manager=TaskManager(include_path=str(include)),
        log_samples=True,
        bootstrap_iters=0,
        random_seed=0,
        numpy_random_seed=0,
        torch_random_seed=0,
        fewshot_random_seed=0,
    )
    return time.perf_counter() - start, results


def run_puyu(model: object, subjects: list[str], data: Path, shots: int, limit: int) -> tuple[float, list]:
    from puyu.eval.evaluators import evaluate_task
    from puyu.eval.tasks import load_task

    start = time.perf_counter()
    results = []
    for subject in subjects:
        task = load_task(f"mmlu_{subject}", data_dir=data, shots=shots, limit=limit)
        results.append(evaluate_task(model, task, chat=False, progress=False))  # type: ignore[arg-type]
    return time.perf_counter() - start, results


def timed(model: object, key: str, seconds: dict[str, float]) -> None:
    """Accumulate the wall time spent inside `model.loglikelihood` under `key`."""
    inner = model.loglikelihood  # type: ignore[attr-defined]

    def wrapper(*args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            seconds[key] += time.perf_counter() - start

    model.loglikelihood = wrapper  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--workdir", default="runs/bench/eval_vs_lmeval")
    parser.add_argument("--subjects", default=SUBJECTS)
    parser.add_argument("--limit", type=int, default=25, help="questions per subject")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch
    from lm_eval.models.huggingface import HFLM

    from puyu.client.local import LocalModel

    torch.set_num_threads(args.threads)
    data = Path(args.data)
    subjects = [s for s in args.subjects.split(",") if s]
    folder = build_model(Path(args.workdir), data / "mmlu")
    include = Path(tempfile.mkdtemp(prefix="lmeval-tasks-"))
    names = write_lmeval_tasks(data / "mmlu", subjects, include)
    lm = HFLM(pretrained=str(folder), dtype="float32", batch_size=args.batch_size, device="cpu")
    ours = LocalModel(folder, batch_size=args.batch_size, device="cpu")
    model_seconds = {"lm": 0.0, "ours": 0.0}
    timed(lm, "lm", model_seconds)
    timed(ours, "ours", model_seconds)
    lm_times, our_times, lm_model, our_model = [], [], [], []
    lm_results: dict = {}
    our_results: list = []
    for repeat in range(args.repeats):
        order = ["lm", "ours"] if repeat % 2 == 0 else ["ours", "lm"]
        for which in order:
            before = model_seconds[which]
            if which == "lm":
                seconds, lm_results = run_lmeval(lm, names, include, args.shots, args.limit)
                lm_times.append(seconds)
                lm_model.append(model_seconds["lm"] - before)
            else:
                seconds, our_results = run_puyu(ours, subjects, data, args.shots, args.limit)
                our_times.append(seconds)
                our_model.append(model_seconds["ours"] - before)
        print(f"repeat {repeat + 1}: lm-eval {lm_times[-1]:.1f} s, puyu {our_times[-1]:.1f} s", flush=True)

    rows, agree, total, max_diff = [], 0, 0, 0.0
    for subject, name, ours_result in zip(subjects, names, our_results, strict=True):
        samples = sorted(lm_results["samples"][name], key=lambda s: s["doc_id"])
        lm_acc = 100.0 * lm_results["results"][name]["acc,none"]
        for sample, record in zip(samples, ours_result.records, strict=True):
            lm_lls = [float(r[0]) for r in sample["filtered_resps"]]
            lm_pred = max(range(len(lm_lls)), key=lambda i: (lm_lls[i], -i))
            agree += lm_pred == record["pred"]
            total += 1
            max_diff = max(max_diff, max(abs(a - b) for a, b in zip(lm_lls, record["logprobs"], strict=True)))
        rows.append((subject, len(samples), lm_acc, ours_result.score))
    n = sum(r[1] for r in rows)
    lm_overall = sum(r[1] * r[2] for r in rows) / n
    our_overall = sum(r[1] * r[3] for r in rows) / n
    lm_time, our_time = statistics.median(lm_times), statistics.median(our_times)
    lm_call, our_call = statistics.median(lm_model), statistics.median(our_model)
    info = machine_info(["torch", "transformers", "lm_eval"], threads=args.threads)
    lines = [
        "### Evaluation: puyu eval vs lm-evaluation-harness (MMLU, log-likelihood)",
        "",
        f"Model: random Llama-layout fp32, hidden {MODEL['hidden_size']}, {MODEL['num_layers']} layers, vocab "
        f"{MODEL['vocab_size']}, BPE tokenizer (8192) trained on MMLU dev/val. {args.shots}-shot, first "
        f"{args.limit} test questions of {len(subjects)} subjects ({n} questions), batch size {args.batch_size}, "
        f"{args.threads} threads. Machine: {info['cpu']}; torch {info['torch']}, transformers "
        f"{info['transformers']}, lm_eval {info['lm_eval']}; {info['date']}.",
        "",
        "| subject | n | lm-eval acc | puyu acc |",
        "|---|---|---|---|",
        *[f"| {s} | {k} | {a:.2f} | {b:.2f} |" for s, k, a, b in rows],
        f"| **all** | {n} | {lm_overall:.2f} | {our_overall:.2f} |",
        "",
        f"Per-question predictions agree on {agree}/{total}; largest log-likelihood difference {max_diff:.2e}.",
        "",
        f"| medians of {args.repeats} | end-to-end s | questions/s | in `loglikelihood` s | questions/s |",
        "|---|---|---|---|---|",
        f"| lm-eval (hf) | {lm_time:.1f} | {n / lm_time:.2f} | {lm_call:.1f} | {n / lm_call:.2f} |",
        f"| puyu eval | {our_time:.1f} | {n / our_time:.2f} | {our_call:.1f} | {n / our_call:.2f} |",
        f"| **puyu / lm-eval** | | **{lm_time / our_time:.2f}x** | | **{lm_call / our_call:.2f}x** |",
        "",
        f"Accuracy difference {abs(our_overall - lm_overall):.2f} points. End-to-end: task building, prompts, "
        "model calls, metrics (lm-eval's includes building its datasets from the CSVs).",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
