"""puyu's text protocols render and parse exactly as Lagent 0.2.4 does.

The reference outputs in fixtures/lagent_0_2_4.json were produced by Lagent 0.2.4 itself (its `Internlm2Protocol`
with `INTERNLM2_META`, its `ReActProtocol`, its `ActionExecutor`) from equivalent tools and histories; see
fixtures/make_lagent_fixtures.py. Lagent's dependency set (Jupyter, Streamlit, a pinned pre-release search client)
is too heavy to install for the test suite, hence the recording.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from puyu.agent.protocols.internlm2 import InternLM2Protocol, parse_internlm2
from puyu.agent.protocols.lagent_schema import lagent_description
from puyu.agent.protocols.react import ReActProtocol, parse_react
from puyu.agent.tools import Toolkit, as_tools, tool, toolkit_method

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "lagent_0_2_4.json").read_text(encoding="utf-8"))


@tool(name="Calculator")
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly and return the number.

    Args:
        expression: arithmetic such as (3 + 4) * 12
    """
    return expression


class Weather(Toolkit):
    @toolkit_method
    def forecast(self, city: str, days: int = 3, metric: bool = True) -> dict:
        """Forecast the weather of a city.

        Args:
            city: the city's name
            days: how many days ahead
            metric: Celsius when true
        """
        return {}

    @toolkit_method
    def now(self, city: str, lat: float) -> dict:
        """The weather in a city right now.

        Args:
            city: the city's name
            lat: its latitude
        """
        return {}


@tool
def python(code: str) -> str:
    """Run Python code.

    Args:
        code: the code
    """
    return code


PLUGINS = as_tools([calculator, Weather()])


def _call(call_id: str, name: str, arguments: dict) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


INTERNLM2_HISTORY = [
    {"role": "user", "content": "What is 12 * 7, and the weather in Paris?"},
    {
        "role": "assistant",
        "content": "Let me compute it.",
        "tool_calls": [_call("a", "Calculator", {"expression": "12 * 7"})],
    },
    {"role": "tool", "tool_call_id": "a", "content": "84"},
    {
        "role": "assistant",
        "content": "Now the weather.",
        "tool_calls": [_call("b", "Weather.forecast", {"city": "Paris", "days": 2})],
    },
    {"role": "tool", "tool_call_id": "b", "content": '{"temp": 21}'},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [_call("c", "python", {"code": "```python\nprint(2 ** 10)\n```"})],
    },
    {"role": "tool", "tool_call_id": "c", "content": "1024"},
]


def test_tool_descriptions_match_lagent():
    assert [lagent_description(t) for t in PLUGINS] == FIXTURES["plugin_descriptions"]


@pytest.mark.parametrize(
    ("case", "history", "tools"),
    [
        ("plugins_and_interpreter", INTERNLM2_HISTORY, [*PLUGINS, python]),
        ("plugins_only", INTERNLM2_HISTORY[:1], PLUGINS),
        ("interpreter_only", INTERNLM2_HISTORY[:1], [python]),
    ],
)
def test_internlm2_prompt_matches_lagent(case, history, tools):
    assert InternLM2Protocol().render(history, tools) == FIXTURES["internlm2_prompts"][case]


def test_internlm2_parse_matches_lagent():
    for reply, expected in FIXTURES["internlm2_parses"]:
        assert list(parse_internlm2(reply)) == expected, reply


def test_internlm2_turns_become_tool_calls():
    protocol = InternLM2Protocol()
    plugin_reply, interpreter_reply = FIXTURES["internlm2_parses"][0][0], FIXTURES["internlm2_parses"][1][0]
    turn = protocol.parse(plugin_reply, [*PLUGINS, python])
    assert turn.error is None and turn.content == "I will use the calculator."
    assert [(c.name, c.arguments) for c in turn.calls] == [("Calculator", {"expression": "2+3"})]
    turn = protocol.parse(interpreter_reply, [*PLUGINS, python])
    assert [(c.name, c.arguments) for c in turn.calls] == [
        ("python", {"code": "```python\nprint(sum(range(10)))\n```"})
    ]
    broken = protocol.parse('x<|action_start|><|plugin|>\n{"name": "Calculator", "param<|action_end|>', PLUGINS)
    assert broken.error and not broken.calls


REACT_HISTORY = [
    {"role": "user", "content": "What is 12 * 7?"},
    {
        "role": "assistant",
        "content": "I should compute.",
        "raw": FIXTURES["react_history"][1]["content"],
        "tool_calls": [_call("a", "Calculator", {"expression": "12 * 7"})],
    },
    {"role": "tool", "tool_call_id": "a", "content": "84"},
]


def test_react_prompt_matches_lagent():
    protocol = ReActProtocol()
    assert protocol.format(REACT_HISTORY, PLUGINS) == FIXTURES["react_prompts"]["with_history"]
    assert protocol.format(REACT_HISTORY[:1], PLUGINS, answer_now=True) == FIXTURES["react_prompts"]["force_stop"]


def test_react_parse_matches_lagent():
    for reply, expected in FIXTURES["react_parses"]:
        assert list(parse_react(reply)) == expected, reply


def test_react_turns():
    protocol = ReActProtocol()
    turn = protocol.parse(FIXTURES["react_parses"][0][0], PLUGINS)
    assert [(c.name, c.arguments) for c in turn.calls] == [("Calculator", {"expression": "2+3"})]
    assert protocol.parse("Thought: easy\nFinal Answer: 84", PLUGINS).content == "84"
    assert protocol.parse("no format at all", PLUGINS).error
    # A bare input goes to the tool's single required parameter.
    turn = protocol.parse("Thought: x\nAction: Calculator\nAction Input: 1 + 1", PLUGINS)
    assert turn.calls[0].arguments == {"expression": "1 + 1"}
