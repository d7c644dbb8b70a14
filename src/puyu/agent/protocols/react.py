"""ReAct for models without tool training: Thought / Action / Action Input, results fed back, Final Answer.

The prompt and the parsing follow Lagent 0.2.4's `ReActProtocol` exactly (its English prompt, its `Response:`
marker for tool results, its last-match rules), so prompts written for Lagent carry over; `Observation:` is also
accepted as a stop marker from models trained on other ReAct variants.
"""

from __future__ import annotations

import re

from puyu.agent.protocols.base import REPAIR_PROMPT, AgentProtocol, Turn, arguments_from_text, with_stops
from puyu.agent.protocols.lagent_schema import lagent_description
from puyu.agent.tools import Tool
from puyu.client import ModelClient, ToolCall
from puyu.generation.sampling import SamplingParams

CALL_PROTOCOL_EN = """You are a assistant who can utilize external tools.
{tool_description}
To use a tool, please use the following format:
```
{thought}Think what you need to solve, do you need to use tools?
{action}the tool name, should be one of [{action_names}]
{action_input}the input to the action
```
The response after utilizing tools should using the following format:
```
{response}the results after call the tool.
```
If you already know the answer, or you do not need to use tools,
please using the following format to reply:
```
{thought}the thought process to get the final answer
{finish}final answer
```
Begin!"""

FORCE_STOP_PROMPT_EN = """You should directly give results
 based on history information."""

THOUGHT, ACTION, ACTION_INPUT, RESPONSE, FINISH = "Thought:", "Action:", "Action Input:", "Response:", "Final Answer:"
FINISH_ACTION, NO_ACTION = "FinishAction", "NoAction"


def parse_react(message: str) -> tuple[str, str, str]:
    """(thought, action, action input) as Lagent reads them; action is FinishAction with the answer as input, or
    NoAction when no action could be found."""
    thought = message.split(ACTION)[0]
    thought = thought.split(THOUGHT)[-1]
    thought = thought.split(FINISH)[0]
    if FINISH in message:
        return thought, FINISH_ACTION, message.split(FINISH)[-1]
    action_match = re.findall(f"{ACTION}(.*?)\n", message)
    if not action_match:
        return thought, NO_ACTION, ""
    arg_match = re.findall(f"{ACTION_INPUT}(.*)", message, re.DOTALL)
    if not arg_match:
        return thought, NO_ACTION, ""
    return thought, action_match[-1].strip(), arg_match[-1].strip().strip('"')


class ReActProtocol(AgentProtocol):
    """Text ReAct with Lagent 0.2.4's prompt and parser.

    Args:
        call_protocol: the system prompt template (Lagent's placeholders).
        force_stop: the system turn added on the last turn.
    """

    name = "react"

    def __init__(self, call_protocol: str = CALL_PROTOCOL_EN, force_stop: str = FORCE_STOP_PROMPT_EN) -> None:
        self.call_protocol = call_protocol
        self.force_stop = force_stop

    def system_prompt(self, tools: list[Tool]) -> str:
        # Lagent formats the Python lists themselves into the prompt (their repr), and so must we for parity.
        return self.call_protocol.format(
            tool_description=[lagent_description(t) for t in tools],
            # Lagent lists tools, not APIs: a toolkit's methods share one name.
            action_names=list(dict.fromkeys(t.name.split(".")[0] for t in tools)),
            thought=THOUGHT,
            action=ACTION,
            action_input=ACTION_INPUT,
            response=RESPONSE,
            finish=FINISH,
        )

    def format(self, messages: list[dict], tools: list[Tool], answer_now: bool = False) -> list[dict]:
        """The chat messages sent to the model: system prompt, the conversation in ReAct form, maybe force-stop."""
        formatted = [{"role": "system", "content": self.system_prompt(tools)}]
        for message in messages:
            role = message["role"]
            if role == "assistant" and message.get("tool_calls"):
                formatted.append({"role": "assistant", "content": message.get("raw") or _render_call(message)})
            elif role == "assistant":
                content = message.get("raw") or f"{THOUGHT}\n{FINISH}{message.get('content') or ''}"
                formatted.append({"role": "assistant", "content": content})
            elif role == "tool":
                formatted.append({"role": "system", "content": f"{RESPONSE}{message.get('content', '')}\n"})
            else:
                formatted.append({"role": role, "content": message.get("content") or ""})
        if answer_now:
            formatted.append({"role": "system", "content": self.force_stop})
        return formatted

    def parse(self, text: str, tools: list[Tool]) -> Turn:
        thought, action, action_input = parse_react(text)
        if action == FINISH_ACTION:
            return Turn(content=action_input.strip(), raw=text)
        if action == NO_ACTION:
            return Turn(content=text.strip(), raw=text, error="no Action / Action Input found and no Final Answer")
        by_name = {t.name: t for t in tools}
        arguments = arguments_from_text(action_input, by_name.get(action))
        return Turn(content=thought.strip(), calls=[ToolCall(name=action, arguments=arguments)], raw=text)

    def step(
        self, model: ModelClient, messages: list[dict], tools: list[Tool], params: SamplingParams, answer_now: bool
    ) -> Turn:
        request = self.format(messages, tools, answer_now)
        result = model.complete_chat(request, with_stops(params, [RESPONSE, "Observation:"]))
        turn = self.parse(result.content, tools)
        turn.prompt_tokens, turn.completion_tokens = result.prompt_tokens, result.completion_tokens
        return turn

    def repair(self, error: str) -> dict:
        return {"role": "user", "content": REPAIR_PROMPT.format(error=error)}


def _render_call(message: dict) -> str:
    import json

    from puyu.agent.protocols.base import tool_call_arguments

    call = message["tool_calls"][0]
    arguments = tool_call_arguments(call)
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    thought = message.get("content") or ""
    return f"{THOUGHT}{thought}\n{ACTION}{call['function']['name']}\n{ACTION_INPUT}{text}\n"
