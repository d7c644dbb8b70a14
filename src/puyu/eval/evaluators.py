"""Running one task on one model: prompts → model requests (cached) → per-sample records → scores.

Multiple choice is scored by the log-likelihood of each option (acc, and acc_norm by option length where the
task asks); with chat prompts on an endpoint without a chat-aware log-likelihood it is asked as a question
and the option letter is taken from the reply. Generation tasks extract the answer and apply the task's
metric; perplexity tasks sum token negative log-likelihoods.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from puyu.errors import PuyuError, one_line
from puyu.eval.cache import PredictionCache, request_key
from puyu.eval.extract import extract_choice, extract_number
from puyu.eval.metrics import GENERATION_METRICS, argmax, perplexity
from puyu.eval.models import EvalModel, TaskUnsupported, greedy_params
from puyu.eval.prompts import Prompt, PromptTooLong, build_prompt
from puyu.eval.tasks.base import Doc, Task


@dataclass
class TaskResult:
    """Scores of one task on one model.

    Args:
        score: the headline number: accuracy/exact match in percent, or perplexity.
        metrics: every metric computed (acc, acc_norm, perplexity …).
        subjects: per-subject {"score", "n"} for multi-subject tasks.
        records: per-sample outputs (written to predictions.jsonl).
    """

    task: str
    model: str
    dimension: str
    metric: str
    mode: str
    score: float
    n: int
    errors: int
    metrics: dict[str, float] = field(default_factory=dict)
    subjects: dict[str, dict[str, float]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    model_calls: int = 0

    def summary(self) -> dict[str, Any]:
        """Everything but the records."""
        return {k: v for k, v in self.__dict__.items() if k != "records"}


def _shown_prompt(prompt: Prompt, model: EvalModel) -> str:
    """The prompt as the model saw it: chat messages rendered with its template where the client can render
    them (in-process), else in the canonical form."""
    render = getattr(model, "render_chat", None)
    if prompt.text is None and prompt.messages is not None and render is not None:
        return render(prompt.messages)
    return prompt.key_text()


def model_id(model: EvalModel) -> str:
    """What identifies a model's outputs in the cache."""
    return str(getattr(model, "model_id", None) or getattr(model, "model_dir", None) or model.name)


def _mode(task: Task, model: EvalModel, chat: bool) -> str:
    if task.kind == "perplexity":
        return "perplexity"
    if task.kind == "generation":
        return "chat" if chat else "generate"
    if not chat:
        return "loglikelihood"
    if hasattr(model, "render_chat"):
        return "chat_loglikelihood"
    if task.extractor == "choice":
        return "chat_choice"
    raise PuyuError(f"{task.name}: scoring options after a chat template needs a local model; use --chat off")


def _fits(model: EvalModel, task: Task, mode: str) -> Callable[[Prompt], bool] | None:
    count = getattr(model, "count_tokens", None)
    if count is None:
        return None

    def fits(prompt: Prompt) -> bool:
        text = prompt.text if prompt.text is not None else model.render_chat(prompt.messages)  # type: ignore[attr-defined]
        if mode in ("loglikelihood", "chat_loglikelihood"):
            extra = max((count(c) for c in prompt.continuations), default=0)
        else:
            extra = task.max_tokens
        return count(text) + extra <= model.max_length

    return fits


def _request(task: Task, doc: Doc, prompt: Prompt | None, mode: str, model: EvalModel) -> dict[str, Any]:
    if mode == "perplexity":
        return {"mode": mode, "text": doc.text}
    assert prompt is not None
    if mode in ("loglikelihood", "chat_loglikelihood"):
        context = prompt.text if prompt.text is not None else model.render_chat(prompt.messages)  # type: ignore[attr-defined]
        return {"mode": "loglikelihood", "context": context, "continuations": prompt.continuations}
    stop = [] if mode in ("chat", "chat_choice") else task.stop
    body = prompt.messages if prompt.messages is not None else prompt.text
    return {"mode": mode, "prompt": body, "max_tokens": task.max_tokens, "stop": stop}


def _run_requests(model: EvalModel, requests: list[dict[str, Any]]) -> list[Any]:
    """Ask the model for a batch of same-mode requests; one value per request."""
    mode = requests[0]["mode"]
    if mode == "loglikelihood":
        flat = [(r["context"], c) for r in requests for c in r["continuations"]]
        scores = model.loglikelihood(flat)
        out, k = [], 0
        for r in requests:
            out.append([list(s) for s in scores[k : k + len(r["continuations"])]])
            k += len(r["continuations"])
        return out
    if mode == "perplexity":
        return [list(v) for v in model.perplexity([r["text"] for r in requests])]
    params = greedy_params(requests[0]["max_tokens"], requests[0]["stop"])
    if mode in ("chat", "chat_choice"):
        return model.chat([r["prompt"] for r in requests], params)
    return model.generate([r["prompt"] for r in requests], params)


def _run_with_errors(model: EvalModel, requests: list[dict[str, Any]]) -> list[Any]:
    """As `_run_requests`; when the batch fails, each request alone, failures as {"error": message}."""
    try:
        return _run_requests(model, requests)
    except TaskUnsupported:
        raise
    except PuyuError:
        if len(requests) == 1:
            raise
    out: list[Any] = []
    for request in requests:
        try:
            out.append(_run_requests(model, [request])[0])
        except TaskUnsupported:
            raise
        except PuyuError as exc:
            out.append({"error": one_line(exc)})
    return out


def _score(task: Task, doc: Doc, mode: str, value: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"id": doc.id, "subject": doc.subject, "gold": doc.gold}
    if isinstance(value, dict) and "error" in value:
        record.update(error=value["error"], correct=False)
        return record
    if mode == "perplexity":
        nll, tokens = value
        record.update(nll=nll, tokens=tokens, correct=None)
    elif mode in ("loglikelihood", "chat_loglikelihood"):
        logprobs = [float(lp) for lp, _ in value]
        pred = argmax(logprobs)
        record.update(choices=doc.choices, logprobs=logprobs, pred=pred, correct=pred == doc.gold)
        if task.acc_norm:
            normed = [lp / max(len(choice), 1) for lp, choice in zip(logprobs, doc.choices, strict=True)]
            record.update(pred_norm=argmax(normed), correct_norm=argmax(normed) == doc.gold)
    elif mode == "chat_choice":
        pred = extract_choice(value, len(doc.choices))
        record.update(output=value, pred=pred, correct=pred == doc.gold)
    else:
        metric = GENERATION_METRICS.get(task.metric, GENERATION_METRICS["exact_match"])
        extracted = extract_number(value) if task.extractor == "gsm8k" else value.strip()
        record.update(output=value, extracted=extracted, correct=bool(metric(value, str(doc.gold))))
    return record


def _aggregate(result: TaskResult, task: Task) -> None:
    records = result.records
    result.n, result.errors = len(records), sum("error" in r for r in records)
    if task.kind == "perplexity":
        scored = [r for r in records if "error" not in r]
        nll, tokens = sum(r["nll"] for r in scored), sum(r["tokens"] for r in scored)
        result.score = perplexity(nll, tokens)
        result.metrics = {"perplexity": result.score, "tokens": float(tokens)}
        return
    result.score = 100.0 * sum(bool(r["correct"]) for r in records) / max(len(records), 1)
    result.metrics = {"acc" if task.kind == "multiple_choice" else task.metric: result.score}
    if any("correct_norm" in r for r in records):
        result.metrics["acc_norm"] = 100.0 * sum(bool(r.get("correct_norm")) for r in records) / max(len(records), 1)
    if task.subjects != [""]:
        for subject in task.subjects:
            rows = [r for r in records if r["subject"] == subject]
            result.subjects[subject] = {
                "score": 100.0 * sum(bool(r["correct"]) for r in rows) / len(rows),
                "n": len(rows),
            }
    groups = sorted(set(task.subject_groups.values())) if len(task.subjects) > 1 else []
    for group in groups:
        rows = [r for r in records if task.subject_groups.get(r["subject"]) == group]
        if rows:
            result.metrics[f"acc_{group}"] = 100.0 * sum(bool(r["correct"]) for r in rows) / len(rows)


def evaluate_task(
    model: EvalModel,
    task: Task,
    cache: PredictionCache | None = None,
    *,
    chat: bool | None = None,
    chunk_size: int = 64,
    progress: bool = True,
) -> TaskResult:
    """Score `task` on `model`; outputs already in `cache` are reused and new ones are stored as they arrive.

    Args:
        chat: chat prompts on/off; None: the task's setting, else the model's default.
        chunk_size: samples per model call (and per cache commit).
    """
    start = time.perf_counter()
    use_chat = task.chat if chat is None and task.chat is not None else chat
    if use_chat is None:
        use_chat = bool(getattr(model, "is_chat", False))
    mode = _mode(task, model, use_chat)
    fits = _fits(model, task, mode)
    mid = model_id(model)
    requests: list[dict[str, Any] | None] = []
    values: list[Any] = [None] * len(task.docs)
    prompts: list[Prompt | None] = []
    for i, doc in enumerate(task.docs):
        prompt = None
        if mode != "perplexity":
            try:
                prompt = build_prompt(task, doc, chat=mode.startswith("chat"), fits=fits)
            except PromptTooLong as exc:
                values[i] = {"error": str(exc)}
        prompts.append(prompt)
        requests.append(None if values[i] is not None else _request(task, doc, prompt, mode, model))
    keys = [request_key(mid, task.name, r) if r is not None else "" for r in requests]
    cached = cache.get_many([k for k in keys if k]) if cache is not None else {}
    todo = [i for i, k in enumerate(keys) if k and k not in cached]
    for i, k in enumerate(keys):
        if k in cached:
            values[i] = cached[k]
    calls = 0
    bar = tqdm(total=len(todo), desc=f"{model.name} · {task.name}", unit="sample", disable=not progress or not todo)
    for begin in range(0, len(todo), chunk_size):
        chunk = todo[begin : begin + chunk_size]
        outputs = _run_with_errors(model, [requests[i] for i in chunk])  # type: ignore[misc]
        calls += 1
        fresh = {}
        for i, output in zip(chunk, outputs, strict=True):
            values[i] = output
            if not (isinstance(output, dict) and "error" in output):
                fresh[keys[i]] = output
        if cache is not None and fresh:
            cache.put_many(mid, task.name, fresh)
        bar.update(len(chunk))
    bar.close()
    result = TaskResult(
        task=task.name,
        model=model.name,
        dimension=task.dimension,
        metric=task.metric,
        mode=mode,
        score=0.0,
        n=0,
        errors=0,
        model_calls=calls,
    )
    for doc, prompt, value in zip(task.docs, prompts, values, strict=True):
        record = _score(task, doc, mode, value)
        if prompt is not None:
            record["shots"] = prompt.shots
            record["prompt"] = _shown_prompt(prompt, model)
        result.records.append(record)
    _aggregate(result, task)
    result.seconds = time.perf_counter() - start
    return result
