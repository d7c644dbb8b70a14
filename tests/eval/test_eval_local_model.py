from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from eval_support import make_model

from puyu.client.local import LocalModel, _Group
from puyu.eval.evaluators import evaluate_task
from puyu.eval.models import EvalModel, greedy_params, load_client
from puyu.eval.tasks import load_task


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> LocalModel:
    return LocalModel(tiny_model, batch_size=3)


def reference_loglikelihood(model: LocalModel, context: str, continuation: str) -> tuple[float, bool]:
    """A plain full forward over context + continuation, log_softmax, sum over the continuation's tokens."""
    context_ids, cont_ids = model.encode_pair(context, continuation)
    with torch.no_grad():
        logprobs = F.log_softmax(model.model(torch.tensor([context_ids + cont_ids])).float(), dim=-1)[0]
    rows = [len(context_ids) - 1 + j for j in range(len(cont_ids))]
    total = sum(logprobs[r, t].item() for r, t in zip(rows, cont_ids, strict=True))
    greedy = all(logprobs[r].argmax().item() == t for r, t in zip(rows, cont_ids, strict=True))
    return total, greedy


def test_protocol_and_loader(model: LocalModel, tiny_model: Path) -> None:
    assert isinstance(model, EvalModel)
    assert isinstance(load_client(str(tiny_model)), LocalModel)
    assert model.max_length == 2048 and model.name == "tiny"


def test_loglikelihood_equals_a_plain_forward(model: LocalModel) -> None:
    requests = [
        ("Question: 2+3?\nAnswer:", " A"),
        ("Question: 2+3?\nAnswer:", " B"),
        ("Question: 2+3?\nAnswer:", " five and more words"),  # multi-token option beside one-token ones
        ("The sky is", " blue"),
        ("Trailing space ", "moves"),  # lm-eval moves the context's trailing space into the continuation
        ("", "no context at all"),
    ]
    got = model.loglikelihood(requests)
    for (context, continuation), (score, greedy) in zip(requests, got, strict=True):
        expected, expected_greedy = reference_loglikelihood(model, context, continuation)
        assert score == pytest.approx(expected, abs=1e-4)
        assert greedy == expected_greedy
    assert (
        model.encode_pair("Trailing space ", "moves")[1][0] == model.tokenizer.encode(" ", add_special_tokens=False)[0]
    )


def test_greedy_flag_is_true_for_the_models_own_tokens(model: LocalModel) -> None:
    ids = model.tokenizer.encode("abc")
    with torch.no_grad():
        first = model.model(torch.tensor([ids]))[0, -1].argmax().item()
        second = model.model(torch.tensor([[*ids, first]]))[0, -1].argmax().item()
    group = _Group(ids, [[first, second], [first, (second + 1) % 256]], [0, 1])
    (greedy_score, greedy), (other_score, other) = model._score_groups([group])[0]
    assert greedy and not other and greedy_score > other_score


def test_perplexity_equals_a_plain_forward(model: LocalModel) -> None:
    texts = ["hello world, this is a test", "x"]
    got = model.perplexity(texts)
    for text, (nll, count) in zip(texts, got, strict=True):
        ids = model.tokenizer.encode(text)
        if model.tokenizer.bos_id is None or ids[0] != model.tokenizer.bos_id:
            ids = [model._prefix_id(), *ids]
        with torch.no_grad():
            logits = model.model(torch.tensor([ids])).float()[0]
        expected = F.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="sum").item()
        assert count == len(ids) - 1
        assert nll == pytest.approx(expected, rel=1e-5)


def test_mmlu_scores_follow_the_loglikelihoods(model: LocalModel, bench_data: Path) -> None:
    task = load_task("mmlu_astronomy", data_dir=bench_data, shots=1)
    result = evaluate_task(model, task, chat=False, progress=False)
    assert result.mode == "loglikelihood" and result.n == 3
    for record, doc in zip(result.records, task.docs, strict=True):
        expected = [reference_loglikelihood(model, record["prompt"], f" {c}")[0] for c in doc.choices]
        assert record["logprobs"] == pytest.approx(expected, abs=1e-4)
        assert record["pred"] == max(range(4), key=lambda i: expected[i])
    assert result.score == pytest.approx(100 * sum(r["correct"] for r in result.records) / 3)
    assert result.subjects == {"astronomy": {"score": result.score, "n": 3}}


def test_acc_norm_divides_by_option_length(model: LocalModel, bench_data: Path) -> None:
    result = evaluate_task(model, load_task("arc_easy", data_dir=bench_data), progress=False)
    for record in result.records:
        normed = [lp / len(c) for lp, c in zip(record["logprobs"], record["choices"], strict=True)]
        assert record["pred_norm"] == max(range(len(normed)), key=lambda i: normed[i])
    assert "acc_norm" in result.metrics


def test_long_prompts_drop_shots_then_get_an_error_mark(tmp_path: Path, bench_data: Path) -> None:
    short = LocalModel(make_model(tmp_path / "short", max_position_embeddings=150))
    task = load_task("mmlu_astronomy", data_dir=bench_data, shots=3)
    result = evaluate_task(short, task, chat=False, progress=False)
    shots = [r.get("shots") for r in result.records]
    assert all(s is None or s < 3 for s in shots)  # examples were dropped to fit 150 tokens
    for record in result.records:
        if "error" not in record:
            assert short.count_tokens(record["prompt"]) + 2 <= 150
    tiny = LocalModel(make_model(tmp_path / "tinyctx", max_position_embeddings=40))
    result = evaluate_task(tiny, task, chat=False, progress=False)
    assert result.errors == 3 and all("does not fit" in r["error"] for r in result.records)
    assert result.score == 0.0


def test_chat_prompts_score_after_the_template(model: LocalModel, bench_data: Path) -> None:
    task = load_task("mmlu_astronomy", data_dir=bench_data, shots=1, limit=1)
    result = evaluate_task(model, task, chat=True, progress=False)
    record = result.records[0]
    assert result.mode == "chat_loglikelihood"
    context = model.render_chat(
        [
            {"role": "user", "content": task.docs[0].description + task.docs[0].shots[0][0]},
            {"role": "assistant", "content": "B"},
            {"role": "user", "content": task.docs[0].query},
        ]
    )
    expected = [reference_loglikelihood(model, context, c)[0] for c in "ABCD"]
    assert record["logprobs"] == pytest.approx(expected, abs=1e-4)
    # predictions.jsonl shows the prompt as the model saw it: rendered with its chat template.
    assert record["prompt"] == context


def test_generation_task_runs_and_extracts(model: LocalModel, bench_data: Path) -> None:
    task = load_task("gsm8k", data_dir=bench_data, shots=1, limit=2)
    task.max_tokens = 8
    result = evaluate_task(model, task, chat=False, progress=False)
    assert result.mode == "generate" and result.n == 2
    texts = model.generate([r["prompt"] for r in result.records], greedy_params(8, task.stop))
    assert [r["output"] for r in result.records] == texts  # greedy decoding is deterministic
    assert not math.isnan(result.score)


def test_batched_generation_equals_the_reference_generator(model: LocalModel) -> None:
    prompts = ["Hello there", "Question: 1+1?\nAnswer:", "x"]
    params = greedy_params(10, ["Question:"])
    reference = model._reference_generate([model.tokenizer.encode(p) for p in prompts], params, chat=False)
    assert model.generate(prompts, params) == reference
    conversation = [{"role": "user", "content": "hi"}]
    ids = model.tokenizer.encode(model.render_chat(conversation), add_special_tokens=False)
    assert model.chat([conversation], greedy_params(8)) == model._reference_generate([ids], greedy_params(8), chat=True)


def test_perplexity_task_from_yaml(model: LocalModel, tmp_path: Path) -> None:
    texts = ["the quick brown fox", "jumps over the lazy dog again and again"]
    (tmp_path / "t.jsonl").write_text("".join(f'{{"text": "{t}"}}\n' for t in texts), encoding="utf-8")
    (tmp_path / "ppl.yaml").write_text("name: ppl\ntype: perplexity\npath: t.jsonl\ndimension: language\n")
    result = evaluate_task(model, load_task(str(tmp_path / "ppl.yaml"), data_dir=None), progress=False)
    pairs = model.perplexity(texts)
    expected = math.exp(sum(n for n, _ in pairs) / sum(c for _, c in pairs))
    assert result.mode == "perplexity" and result.metric == "perplexity"
    assert result.score == pytest.approx(expected, rel=1e-6)
    assert [r["tokens"] for r in result.records] == [c for _, c in pairs]


def test_one_token_options_use_the_causal_path_with_padding(model: LocalModel) -> None:
    requests = [("Question: 2+3?\nAnswer:", "A"), ("Question: 2+3?\nAnswer:", "B"), ("Hi", "x"), ("Hello you", "y")]
    assert all(len(model.encode_pair(c, x)[1]) == 1 for c, x in requests)
    for (context, continuation), (score, greedy) in zip(requests, model.loglikelihood(requests), strict=True):
        expected, expected_greedy = reference_loglikelihood(model, context, continuation)
        assert score == pytest.approx(expected, abs=1e-4) and greedy == expected_greedy
