"""The one model client: the in-process and the HTTP implementation give the same turns (content, parsed tool
calls, streaming, async) for the same scripted model; the HTTP side is the official `openai` package talking to
a live `puyu serve`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
serve_support = pytest.importorskip("serve_support", reason="the server test support is not available")
create_app = pytest.importorskip("puyu.serve.app", reason="puyu.serve is not available").create_app

from openai.types.chat import ChatCompletionChunk  # noqa: E402
from test_serve_tools import CALL, TOOLS  # noqa: E402

from puyu import LLM  # noqa: E402
from puyu.client import ChatResult, LocalModel, OpenAIModel, ToolCall, load_client  # noqa: E402
from puyu.client.openai_http import _CallAssembler  # noqa: E402
from puyu.engine.shared import SharedEngine  # noqa: E402
from puyu.errors import PuyuError  # noqa: E402
from puyu.generation.sampling import SamplingParams  # noqa: E402

QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
GREEDY = SamplingParams(max_tokens=12, temperature=0)


def script(prompt: str) -> str | None:
    """A tool call when tools are offered, the answer once the result is back, else the model's own reply."""
    if "<|im_start|>environment" in prompt:
        return "It is 21 degrees."
    if "<|plugin|>\n[" in prompt:
        return "Let me check." + CALL
    return None


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return serve_support.make_model_folder(tmp_path_factory.mktemp("client") / "tiny")


@pytest.fixture(scope="module")
def local(folder: Path) -> LocalModel:
    model = LocalModel(folder)
    model._engine = SharedEngine(serve_support.build_engine(folder, script=script))
    return model


@pytest.fixture(scope="module")
def remote(folder: Path) -> Iterator[OpenAIModel]:
    engine = serve_support.engine_factory(folder, script=script)()
    with serve_support.live_server(create_app(engine, model_name="tiny")) as url:
        client = load_client(url)
        assert isinstance(client, OpenAIModel)
        yield client


@pytest.fixture(params=["local", "remote"])
def client(request: pytest.FixtureRequest) -> LocalModel | OpenAIModel:
    return request.getfixturevalue(request.param)


def test_tool_call_turn(client: LocalModel | OpenAIModel) -> None:
    result = client.complete_chat(QUESTION, SamplingParams(max_tokens=200, temperature=0), tools=TOOLS)
    assert result.content == "Let me check."
    assert result.finish_reason == "tool_calls"
    (call,) = result.tool_calls
    assert (call.name, call.arguments) == ("get_weather", {"city": "Paris"})
    assert result.prompt_tokens > 0 and result.completion_tokens > 0
    history = [*QUESTION, result.message(), {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'}]
    answer = client.complete_chat(history, SamplingParams(max_tokens=200, temperature=0), tools=TOOLS)
    assert (answer.content, answer.tool_calls, answer.finish_reason) == ("It is 21 degrees.", [], "stop")


def test_streamed_turn_equals_the_whole_turn(client: LocalModel | OpenAIModel) -> None:
    params = SamplingParams(max_tokens=200, temperature=0)
    deltas = list(client.stream_chat(QUESTION, params, tools=TOOLS))
    # Markup is never shown as content; the calls arrive on the last delta.
    assert all("<|" not in d.content for d in deltas)
    assert all(not d.tool_calls for d in deltas[:-1])
    streamed = ChatResult.from_deltas(deltas)
    whole = client.complete_chat(QUESTION, params, tools=TOOLS)
    assert (streamed.content, streamed.finish_reason) == (whole.content, whole.finish_reason)
    assert [(c.name, c.arguments) for c in streamed.tool_calls] == [(c.name, c.arguments) for c in whole.tool_calls]


def test_both_clients_and_the_llm_agree_on_a_free_reply(local: LocalModel, remote: OpenAIModel, folder: Path) -> None:
    messages = [{"role": "user", "content": "Name a colour."}]
    expected = LLM(folder, device="cpu", dtype="float32").chat(messages, GREEDY)[0].text
    assert local.complete_chat(messages, GREEDY).content == expected
    assert remote.complete_chat(messages, GREEDY).content == expected
    assert "".join(d.content for d in remote.stream_chat(messages, GREEDY)) == expected


def test_async_calls_run_concurrently_and_match(client: LocalModel | OpenAIModel) -> None:
    conversations = [[{"role": "user", "content": f"Count to {n}."}] for n in range(4)]
    sequential = [client.complete_chat(c, GREEDY).content for c in conversations]

    async def together() -> list[ChatResult]:
        return await asyncio.gather(*(client.acomplete_chat(c, GREEDY) for c in conversations))

    assert [r.content for r in asyncio.run(together())] == sequential

    async def first_piece() -> str:
        stream = client.astream_chat(conversations[0], SamplingParams(max_tokens=50, temperature=0))
        async for delta in stream:
            await stream.aclose()  # the consumer leaves early: the request is aborted
            return delta.content
        return ""

    asyncio.run(first_piece())


def test_local_engine_is_left_clean_after_an_early_stop(local: LocalModel) -> None:
    stream = local.stream_chat([{"role": "user", "content": "Tell a story."}], SamplingParams(max_tokens=100))
    next(stream)
    stream.close()
    assert not local._engine.engine.has_unfinished_requests()  # type: ignore[union-attr]


def test_raw_text_keeps_control_tokens(local: LocalModel) -> None:
    prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    text = local.complete_text(prompt, GREEDY)
    assert text == LLM(local.model_dir, device="cpu", dtype="float32").generate(prompt, GREEDY)[0].text


def test_embeddings_need_an_encoder(local: LocalModel, remote: OpenAIModel) -> None:
    with pytest.raises(PuyuError, match="no embeddings"):
        local.embed(["a"])
    with pytest.raises(PuyuError, match="HTTP 404"):
        remote.embed(["a"])


def test_streamed_call_fragments_are_joined_by_index() -> None:
    """Chunks in the shape OpenAI streams them (parsed by the `openai` package's own types)."""

    def chunk(delta: dict, finish: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk.model_validate(
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    fragments = [
        {"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{"}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"x": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": "not json"}}]},
    ]
    assembler = _CallAssembler()
    assert assembler.feed(chunk({"role": "assistant", "content": "Hi"})).content == "Hi"  # type: ignore[union-attr]
    for fragment in fragments:
        assert assembler.feed(chunk(fragment)) is None
    assembler.feed(chunk({}, "tool_calls"))
    last = assembler.finish()
    assert last.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in last.tool_calls] == [
        ("call_a", "f", {"x": 1}),
        ("call_b", "g", "{not json"),  # kept as text: the caller decides how to repair or report it
    ]


def test_tool_call_round_trips_the_openai_shape() -> None:
    call = ToolCall(name="f", arguments={"city": "巴黎"})
    assert ToolCall.from_openai(call.to_openai()) == call
    assert ToolCall.from_openai({"function": {"name": "f", "arguments": ""}}).arguments == {}
