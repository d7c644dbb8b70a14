"""API mode against a live OpenAI-compatible `puyu serve` app on a loopback port (started as the server's
own tests start it), compared with the same folder evaluated in-process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
serve_support = pytest.importorskip("serve_support", reason="the server test support is not available")
create_app = pytest.importorskip("puyu.serve.app", reason="puyu.serve is not available").create_app

from fastapi import FastAPI  # noqa: E402

from puyu.client.local import LocalModel  # noqa: E402
from puyu.client.openai_http import NO_PROMPT_LOGPROBS, OpenAIModel, normalize_base_url  # noqa: E402
from puyu.errors import PuyuError  # noqa: E402
from puyu.eval.evaluators import evaluate_task  # noqa: E402
from puyu.eval.models import greedy_params, load_client  # noqa: E402
from puyu.eval.tasks import load_task  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return serve_support.make_model_folder(tmp_path_factory.mktemp("eval-api") / "tiny")


@pytest.fixture(scope="module")
def url(folder: Path) -> Iterator[str]:
    engine = serve_support.engine_factory(folder)()
    with serve_support.live_server(create_app(engine, model_name="tiny")) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def local(folder: Path) -> LocalModel:
    return LocalModel(folder)


def test_loglikelihood_and_perplexity_match_the_local_model(url: str, local: LocalModel) -> None:
    api = load_client(url)
    assert isinstance(api, OpenAIModel) and api.name == "tiny"
    requests = [("Question: 2+3?\nAnswer:", " A"), ("Question: 2+3?\nAnswer:", " B"), ("The sky is", " blue today")]
    got = api.loglikelihood(requests)
    expected = local.loglikelihood(requests)
    assert [g[0] for g in got] == pytest.approx([e[0] for e in expected], abs=1e-3)
    assert [g[1] for g in got] == [e[1] for e in expected]
    (nll, count), (ref_nll, ref_count) = api.perplexity(["hello world"])[0], local.perplexity(["hello world"])[0]
    assert count == ref_count and nll == pytest.approx(ref_nll, rel=1e-4)


def test_generation_matches_the_local_model(url: str, local: LocalModel) -> None:
    api = OpenAIModel(url, concurrency=4)
    prompts = ["Once upon", "Question: 1+1?\nAnswer:", "abc"]
    assert api.generate(prompts, greedy_params(6)) == local.generate(prompts, greedy_params(6))
    conversation = [[{"role": "user", "content": "Name a colour."}]]
    assert api.chat(conversation, greedy_params(6)) == local.chat(conversation, greedy_params(6))


def test_a_task_scores_the_same_over_http(url: str, local: LocalModel, tmp_path: Path) -> None:
    from eval_support import write_mmlu

    task = load_task("mmlu", data_dir=write_mmlu(tmp_path / "mmlu"), shots=1)
    over_http = evaluate_task(OpenAIModel(url), task, chat=False, progress=False)
    in_process = evaluate_task(local, task, chat=False, progress=False)
    assert [r["pred"] for r in over_http.records] == [r["pred"] for r in in_process.records]
    assert over_http.score == in_process.score


def test_unreachable_endpoint_is_a_clear_error() -> None:
    port = serve_support.free_port()
    with pytest.raises(PuyuError, match="cannot reach the endpoint"):
        OpenAIModel(f"http://127.0.0.1:{port}")
    assert normalize_base_url(f"http://127.0.0.1:{port}") == f"http://127.0.0.1:{port}/v1"


def test_endpoint_without_prompt_logprobs(tmp_path: Path) -> None:
    app = FastAPI()

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": "plain", "object": "model", "created": 0, "owned_by": "x"}]}

    @app.post("/v1/completions")
    def completions() -> dict:
        choice = {"index": 0, "text": "ok", "logprobs": None, "finish_reason": "stop"}
        return {"id": "c", "object": "text_completion", "created": 0, "model": "plain", "choices": [choice]}

    @app.post("/v1/chat/completions")
    def chat() -> dict:
        message = {"role": "assistant", "content": "The answer is B."}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return {"id": "c", "object": "chat.completion", "created": 0, "model": "plain", "choices": [choice]}

    from eval_support import write_mmlu

    with serve_support.live_server(app) as base_url:
        model = OpenAIModel(base_url)
        assert model.generate(["hi"], greedy_params(4)) == ["ok"]
        with pytest.raises(PuyuError, match=NO_PROMPT_LOGPROBS):
            model.loglikelihood([("a", "b")])
        task = load_task("mmlu", data_dir=write_mmlu(tmp_path / "mmlu"), shots=0)
        with pytest.raises(PuyuError, match="generation tasks only"):
            evaluate_task(model, task, chat=False, progress=False)
        # Chat prompts on an endpoint: the option letter is read from the reply instead.
        result = evaluate_task(model, task, chat=True, progress=False)
        assert result.mode == "chat_choice" and [r["pred"] for r in result.records] == [1] * 6
        assert result.score == pytest.approx(100 * 2 / 6)
