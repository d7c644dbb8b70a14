"""The agent loop driven by a scripted model through every protocol path."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from puyu.agent.builtin_tools import builtin
from puyu.agent.events import AnswerEvent, ErrorEvent, ThoughtEvent, ToolCallEvent, ToolResultEvent
from puyu.agent.loop import Agent
from puyu.agent.scripted import ScriptedModel
from puyu.agent.session import Session
from puyu.agent.tools import tool
from puyu.client import ChatResult, ToolCall


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: first
        b: second
    """
    return a + b


@tool
def explode(reason: str) -> str:
    """Always fails.

    Args:
        reason: why
    """
    raise RuntimeError(f"boom: {reason}")


def _types(events) -> list[str]:
    return [e.type for e in events]


def _call(name: str, arguments, call_id: str = "c1") -> ToolCall:
    return ToolCall(name=name, arguments=arguments, id=call_id)


def test_openai_round_trip(tmp_path):
    model = ScriptedModel([ChatResult("Let me add.", [_call("add", {"a": 2, "b": 3})]), ChatResult("It is 5.")])
    agent = Agent(model, [add], protocol="openai", workspace=tmp_path)
    events = list(agent.run("2+3?"))
    assert _types(events) == ["thought", "tool_call", "tool_result", "answer"]
    assert events[2].content == "5" and not events[2].error
    assert events[-1].content == "It is 5."
    # The second request carries the call and its result in OpenAI shape, and the tool specs.
    second = model.requests[1]
    assert second["tools"][0]["function"]["name"] == "add"
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "c1", "name": "add", "content": "5"}
    assert all("raw" not in m for m in second["messages"])


def test_parallel_calls_run_concurrently(tmp_path):
    barrier = threading.Barrier(2, timeout=5)

    @tool
    def meet(who: str) -> str:
        """Wait until the other call arrives (fails when calls run one after another).

        Args:
            who: a name
        """
        barrier.wait()
        return f"met {who}"

    calls = [_call("meet", {"who": "x"}, "c1"), _call("meet", {"who": "y"}, "c2")]
    model = ScriptedModel([ChatResult("", calls), ChatResult("done")])
    events = list(Agent(model, [meet], protocol="openai", workspace=tmp_path).run("go"))
    results = [e for e in events if isinstance(e, ToolResultEvent)]
    assert [(r.id, r.content, r.error) for r in results] == [("c1", "met x", False), ("c2", "met y", False)]


def test_tool_exception_becomes_an_error_result(tmp_path):
    model = ScriptedModel([ChatResult("", [_call("explode", {"reason": "x"})]), ChatResult("sorry")])
    events = list(Agent(model, [explode], protocol="openai", workspace=tmp_path).run("q"))
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result.error and "boom: x" in result.content
    assert events[-1] == AnswerEvent("sorry")


def test_tool_timeout(tmp_path):
    @tool
    def slow(seconds: float) -> str:
        """Sleep.

        Args:
            seconds: how long
        """
        time.sleep(seconds)
        return "woke"

    model = ScriptedModel([ChatResult("", [_call("slow", {"seconds": 3})]), ChatResult("gave up")])
    agent = Agent(model, [slow], protocol="openai", workspace=tmp_path, tool_timeout=0.2)
    (result,) = [e for e in agent.run("q") if isinstance(e, ToolResultEvent)]
    assert result.error and "timed out" in result.content


def test_bad_arguments_unknown_tools_and_validation(tmp_path):
    calls = [_call("add", {"a": "x", "b": 1}, "c1"), _call("nope", {}, "c2")]
    model = ScriptedModel([ChatResult("", calls), ChatResult("ok")])
    events = list(Agent(model, [add], protocol="openai", workspace=tmp_path).run("q"))
    first, second = [e for e in events if isinstance(e, ToolResultEvent)]
    assert first.error and "invalid arguments for add" in first.content
    assert second.error and "unknown tool 'nope'" in second.content


def test_unparsable_native_arguments_get_one_repair_turn(tmp_path):
    model = ScriptedModel(
        [
            ChatResult("", [_call("add", '{"a": 1,')]),
            ChatResult("", [_call("add", {"a": 1, "b": 1}, "c2")]),
            ChatResult("2"),
        ]
    )
    events = list(Agent(model, [add], protocol="openai", workspace=tmp_path).run("q"))
    assert _types(events) == ["error", "tool_call", "tool_result", "answer"]
    repair = model.requests[1]["messages"][-1]
    assert repair["role"] == "tool" and "could not be read" in repair["content"]


def test_react_parse_failure_repair_then_answer(tmp_path):
    model = ScriptedModel(["I think it is five", "Thought: ok\nFinal Answer: 5"])
    events = list(Agent(model, [add], protocol="react", workspace=tmp_path).run("2+3?"))
    assert isinstance(events[0], ErrorEvent) and events[-1] == AnswerEvent("5")
    assert model.requests[1]["messages"][-1]["role"] == "user"
    assert "Response:" in model.requests[0]["stop"]


def test_react_second_parse_failure_is_taken_as_the_answer(tmp_path):
    model = ScriptedModel(["no format", "still no format"])
    events = list(Agent(model, [add], protocol="react", workspace=tmp_path).run("q"))
    assert _types(events) == ["error", "error", "answer"]
    assert events[-1].content == "still no format"


def test_react_tool_round_trip(tmp_path):
    model = ScriptedModel(
        ['Thought: add\nAction: add\nAction Input: {"a": 2, "b": 40}', "Thought: done\nFinal Answer: 42"]
    )
    events = list(Agent(model, [add], protocol="react", workspace=tmp_path).run("q"))
    assert _types(events) == ["thought", "tool_call", "tool_result", "answer"]
    rendered = model.requests[1]["messages"]
    assert rendered[-1] == {"role": "system", "content": "Response:42\n"}
    assert rendered[-2]["content"].startswith("Thought: add\nAction: add")


def test_max_turns_ends_with_an_answer_now_turn(tmp_path):
    looping = ChatResult("", [_call("add", {"a": 1, "b": 1})])
    model = ScriptedModel([looping, looping, ChatResult("final")])
    events = list(Agent(model, [add], protocol="openai", workspace=tmp_path, max_turns=3).run("q"))
    assert _types(events).count("tool_call") == 2
    assert events[-1] == AnswerEvent("final")
    last = model.requests[-1]
    assert last["tools"] is None and "final answer now" in last["messages"][-1]["content"]


def test_max_turns_with_a_model_that_never_stops_calling(tmp_path):
    looping = ChatResult("", [_call("add", {"a": 1, "b": 1})])
    events = list(Agent(ScriptedModel([looping]), [add], protocol="openai", workspace=tmp_path, max_turns=2).run("q"))
    assert isinstance(events[-1], AnswerEvent) and events[-1].content


def test_internlm2_plugin_and_lagent_interpreter_call(tmp_path):
    model = ScriptedModel(
        [
            'Adding.<|action_start|><|plugin|>\n{"name": "add", "parameters": {"a": 20, "b": 22}}<|action_end|>\n',
            "<|action_start|><|plugin|>\n"
            '{"name": "IPythonInterpreter", "parameters": {"command": "6 * 7"}}<|action_end|>',
            "<|action_start|><|interpreter|>\n```python\nprint(40 + 2)\n```<|action_end|>\n",
            "The answer is 42.",
        ]
    )
    agent = Agent(model, [add, *builtin("python")], protocol="internlm2", workspace=tmp_path)
    events = list(agent.run("q"))
    results = [e for e in events if isinstance(e, ToolResultEvent)]
    assert [r.content for r in results] == ["42", "42", "42"]
    assert events[-1] == AnswerEvent("The answer is 42.")
    last_prompt = model.requests[-1]["prompt"]
    assert "<|im_start|>environment name=<|interpreter|>\n42<|im_end|>" in last_prompt
    assert last_prompt.endswith("<|im_start|>assistant\n")
    assert model.requests[0]["stop"] == ["<|im_end|>"]


def test_cancellation_cancels_running_tools(tmp_path):
    started, cancelled = asyncio.Event(), []

    @tool
    async def wait_forever(label: str) -> str:
        """Never returns.

        Args:
            label: a label
        """
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(label)
            raise
        return "unreachable"

    model = ScriptedModel([ChatResult("", [_call("wait_forever", {"label": "x"})])])
    agent = Agent(model, [wait_forever], protocol="openai", workspace=tmp_path)

    async def consume() -> list[str]:
        seen = []
        events = agent.arun("q")
        async for event in events:
            seen.append(event.type)
            if isinstance(event, ToolCallEvent):
                task = asyncio.ensure_future(events.__anext__())
                await started.wait()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                break
        await events.aclose()
        return seen

    assert asyncio.run(consume()) == ["tool_call"]
    assert cancelled == ["x"]


def test_sessions_save_load_and_stay_isolated(tmp_path):
    python = builtin("python")
    model = ScriptedModel([ChatResult("", [_call("python", {"code": "x = 21"})]), ChatResult("stored")])
    agent = Agent(model, python, protocol="openai", workspace=tmp_path)
    first = agent.new_session("alpha")
    list(agent.run("store 21", first))
    first.save(tmp_path / "alpha.json")
    first.close()

    other = agent.new_session("beta")
    model.replies = [ChatResult("", [_call("python", {"code": "'x' in globals()"}, "c9")]), ChatResult("no")]
    model._next = 0
    (result,) = [e for e in agent.run("x?", other) if isinstance(e, ToolResultEvent)]
    assert result.content == "False"
    other.close()

    loaded = Session.load(tmp_path / "alpha.json", tmp_path)
    assert loaded.id == "alpha" and loaded.messages[0]["content"] == "store 21"
    model.replies = [ChatResult("", [_call("python", {"code": "x * 2"}, "c3")]), ChatResult("42")]
    model._next = 0
    (result,) = [e for e in agent.run("double it", loaded) if isinstance(e, ToolResultEvent)]
    loaded.close()
    assert result.content == "42"  # the interpreter's state came back with the session
    assert first.workspace != other.workspace


def test_session_ids_are_checked(tmp_path):
    from puyu.errors import PuyuError

    with pytest.raises(PuyuError):
        Session(tmp_path, "../escape")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(PuyuError):
        Session.load(tmp_path / "bad.json", tmp_path)


def test_trace_records_events_tokens_and_latency(tmp_path):
    model = ScriptedModel(
        [ChatResult("", [_call("add", {"a": 1, "b": 2})], prompt_tokens=10, completion_tokens=4), ChatResult("3")]
    )
    agent = Agent(model, [add], protocol="openai", workspace=tmp_path, trace_dir=tmp_path / "traces")
    list(agent.run("q"))
    (trace,) = (tmp_path / "traces").glob("*.jsonl")
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [r["type"] for r in records] == ["model", "tool_call", "tool_result", "model", "answer"]
    assert records[0]["prompt_tokens"] == 10 and records[0]["seconds"] >= 0


def test_model_failure_is_an_error_event(tmp_path):
    class Broken(ScriptedModel):
        async def acomplete_chat(self, messages, params, tools=None):
            raise ConnectionError("endpoint down")

    events = list(Agent(Broken([]), [add], protocol="openai", workspace=tmp_path).run("q"))
    assert _types(events) == ["error"] and "endpoint down" in events[0].message


def test_auto_protocol_from_the_template():
    from puyu.agent.protocols import auto_protocol
    from puyu.chat.template import ChatTemplate

    class Local:
        def __init__(self, template):
            self.template = template

    python = builtin("python")
    assert auto_protocol(ScriptedModel([])) == "openai"
    assert auto_protocol(Local(ChatTemplate.builtin("internlm2")), python) == "internlm2"
    assert auto_protocol(Local(ChatTemplate.builtin("internlm2")), [add]) == "openai"
    assert auto_protocol(Local(ChatTemplate.builtin("qwen2")), python) == "openai"
    assert auto_protocol(Local(ChatTemplate("custom", "{{ messages[0]['content'] }}", []))) == "react"
    assert isinstance(ThoughtEvent("x").to_dict(), dict)


def test_token_events_stream_with_the_native_protocol(tmp_path):
    model = ScriptedModel([ChatResult("Adding.", [_call("add", {"a": 1, "b": 2})]), ChatResult("It is 3.")])
    events = list(Agent(model, [add], protocol="openai", workspace=tmp_path, stream_tokens=True).run("q"))
    assert _types(events) == ["token", "thought", "tool_call", "tool_result", "token", "answer"]
    assert events[0].content == "Adding." and events[-1].content == "It is 3."
