"""InternLM2's native agent format: plugin and interpreter calls inside the assistant turn, results from the
`environment` role.

Rendering and parsing follow Lagent 0.2.4's `Internlm2Protocol` with its `INTERNLM2_META` template, byte for byte:
the meta, interpreter and plugin system turns (`name=<|plugin|>` / `name=<|interpreter|>`), the plugin list with only
required parameters and the API prefix, a call re-rendered as `<|action_start|><|plugin|>\\n{json}<|action_end|>\\n`,
and the open `<|im_start|>assistant\\n` at the end. The prompt goes to the model as raw text (`complete_text`).
"""

from __future__ import annotations

import copy
import json

from puyu.agent.protocols.base import (
    INTERPRETER_NAMES,
    REPAIR_PROMPT,
    AgentProtocol,
    Turn,
    tool_call_arguments,
    with_stops,
)
from puyu.agent.protocols.lagent_schema import lagent_description
from puyu.agent.tools import Tool
from puyu.client import ModelClient, ToolCall
from puyu.generation.sampling import SamplingParams

API_PREFIX = (
    "This is the subfunction for tool '{tool_name}', you can use this tool. "
    "The description of this function is: \n{description}"
)
META_CN = "当开启工具以及代码时，根据需求选择合适的工具进行调用"
INTERPRETER_CN = (
    "你现在已经能够在一个有状态的 Jupyter 笔记本环境中运行 Python 代码。"
    "当你向 python 发送含有 Python 代码的消息时，它将在该环境中执行。"
    "这个工具适用于多种场景，如数据分析或处理（包括数据操作、统计分析、图表绘制），"
    "复杂的计算问题（解决数学和物理难题），编程示例（理解编程概念或特性），"
    "文本处理和分析（比如文本解析和自然语言处理），"
    "机器学习和数据科学（用于展示模型训练和数据可视化），"
    "以及文件操作和数据导入（处理CSV、JSON等格式的文件）。"
)
PLUGIN_CN = (
    "你可以使用如下工具："
    "\n{prompt}\n"
    "如果你已经获得足够信息，请直接给出答案. 避免不必要的工具调用! "
    "同时注意你可以使用的工具，不要随意捏造！"
)
ANSWER_NOW_CN = "你需要基于历史消息直接给出最终答案，不要再调用工具。"

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
ACTION_START, ACTION_END = "<|action_start|>", "<|action_end|>"
PLUGIN, INTERPRETER = "<|plugin|>", "<|interpreter|>"
_SUB_ROLE_TOKENS = {"plugin": PLUGIN, "interpreter": INTERPRETER}


def parse_internlm2(message: str, interpreter_name: str = "IPythonInterpreter") -> tuple[str | None, str, object]:
    """(kind, text before the call, action) as Lagent's `Internlm2Protocol.parse` returns them: kind "plugin" with
    the action's JSON text, "interpreter" with `{"name", "parameters": {"command"}}`, or None with no action."""
    if PLUGIN in message:
        text, action = message.split(f"{ACTION_START}{PLUGIN}", 1)
        return "plugin", text, action.split(ACTION_END)[0]
    if INTERPRETER in message:
        try:
            text, code, *_ = message.split(f"{ACTION_START}{INTERPRETER}")
        except ValueError:
            text, code, *_ = message.split(INTERPRETER)
            start = text.rfind(ACTION_START)
            if start != -1:
                text = text[:start]
            text = text.strip()
        code = code.split(ACTION_END)[0].strip()
        return "interpreter", text, {"name": interpreter_name, "parameters": {"command": code}}
    return None, message.split(ACTION_START)[0], None


def render_meta(messages: list[dict]) -> str:
    """Lagent's `INTERNLM2_META` rendering: `<|im_start|>role[ name=…]\\n…<|im_end|>\\n` per message, and the
    assistant's opening when the last message is not the assistant's."""
    prompt = ""
    for index, message in enumerate(messages):
        name = message.get("name")
        role = message["role"]
        label = role if name is None else f"{role} name={_SUB_ROLE_TOKENS.get(name, name)}"
        begin = f"{IM_START}{label}\n"
        prompt += begin + message.get("content", "") + f"{IM_END}\n"
        if index == len(messages) - 1 and role != "assistant":
            prompt += f"{IM_START}assistant\n"
    return prompt


class InternLM2Protocol(AgentProtocol):
    """InternLM2's plugin + interpreter protocol (Lagent 0.2.4 `Internlm2Protocol` with `INTERNLM2_META`).

    Args:
        meta_prompt: the first system turn (Lagent's Chinese default).
        interpreter_prompt: the `name=<|interpreter|>` system turn, sent when a python tool is among the tools.
        plugin_prompt: the `name=<|plugin|>` system turn; `{prompt}` receives the tool list.
    """

    name = "internlm2"

    def __init__(
        self, meta_prompt: str = META_CN, interpreter_prompt: str = INTERPRETER_CN, plugin_prompt: str = PLUGIN_CN
    ) -> None:
        self.meta_prompt = meta_prompt
        self.interpreter_prompt = interpreter_prompt
        self.plugin_prompt = plugin_prompt

    @staticmethod
    def split_tools(tools: list[Tool]) -> tuple[Tool | None, list[Tool]]:
        interpreter = next((t for t in tools if t.name in INTERPRETER_NAMES), None)
        return interpreter, [t for t in tools if t is not interpreter]

    def system_messages(self, tools: list[Tool]) -> list[dict]:
        interpreter, plugins = self.split_tools(tools)
        formatted = [{"role": "system", "content": self.meta_prompt}] if self.meta_prompt else []
        if interpreter is not None and self.interpreter_prompt:
            formatted.append({"role": "system", "content": self.interpreter_prompt, "name": "interpreter"})
        if plugins and self.plugin_prompt:
            descriptions = []
            for tool in plugins:
                plugin = copy.deepcopy(lagent_description(tool))
                plugin["description"] = API_PREFIX.format(
                    tool_name=tool.name.split(".")[0], description=plugin["description"]
                )
                plugin["parameters"] = [p for p in plugin["parameters"] if p["name"] in plugin["required"]]
                descriptions.append(plugin)
            prompt = self.plugin_prompt.format(prompt=json.dumps(descriptions, ensure_ascii=False, indent=4))
            formatted.append({"role": "system", "content": prompt, "name": "plugin"})
        return formatted

    def format(self, messages: list[dict], tools: list[Tool], answer_now: bool = False) -> list[dict]:
        """Lagent's message list (role, content, name) for this conversation."""
        formatted = self.system_messages(tools)
        kinds: dict[str, str] = {}  # tool_call_id -> plugin / interpreter, for the environment turns
        for message in messages:
            role = message["role"]
            if role == "assistant":
                content = message.get("content") or ""
                for call in message.get("tool_calls") or []:
                    kind, body = _render_call(call)
                    kinds[call.get("id", "")] = kind
                    content += f"{ACTION_START}{_SUB_ROLE_TOKENS[kind]}\n{body}{ACTION_END}\n"
                formatted.append({"role": "assistant", "content": content})
            elif role == "tool":
                kind = kinds.get(message.get("tool_call_id", ""), "plugin")
                formatted.append({"role": "environment", "content": message.get("content") or "", "name": kind})
            else:
                entry = {"role": role, "content": message.get("content") or ""}
                if message.get("name"):
                    entry["name"] = message["name"]
                formatted.append(entry)
        if answer_now:
            formatted.append({"role": "user", "content": ANSWER_NOW_CN})
        return formatted

    def render(self, messages: list[dict], tools: list[Tool], answer_now: bool = False) -> str:
        """The raw prompt text."""
        return render_meta(self.format(messages, tools, answer_now))

    def parse(self, text: str, tools: list[Tool]) -> Turn:
        interpreter, _ = self.split_tools(tools)
        text = text.split(IM_END)[0]
        kind, language, action = parse_internlm2(text)
        if kind is None:
            return Turn(content=language.strip(), raw=text)
        if kind == "interpreter":
            if interpreter is None:
                return Turn(content=language, raw=text, error="no interpreter is available; use a listed tool")
            code = action["parameters"]["command"]
            return Turn(content=language, calls=[ToolCall(name=interpreter.name, arguments={"code": code})], raw=text)
        try:
            call = json.loads(action)
        except ValueError:
            return Turn(content=language, raw=text, error="the plugin call is not valid JSON")
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return Turn(content=language, raw=text, error='the plugin call needs {"name": …, "parameters": {…}}')
        parameters = call.get("parameters", {})
        arguments = parameters if isinstance(parameters, dict) else json.dumps(parameters)
        return Turn(content=language, calls=[ToolCall(name=call["name"], arguments=arguments)], raw=text)

    def step(
        self, model: ModelClient, messages: list[dict], tools: list[Tool], params: SamplingParams, answer_now: bool
    ) -> Turn:
        text = model.complete_text(self.render(messages, tools, answer_now), with_stops(params, [IM_END]))
        return self.parse(text, tools)

    def repair(self, error: str) -> dict:
        return {"role": "user", "content": REPAIR_PROMPT.format(error=error)}


def _render_call(call: dict) -> tuple[str, str]:
    """("plugin" | "interpreter", the call's body as Lagent re-renders it)."""
    name = call["function"]["name"]
    arguments = tool_call_arguments(call)
    if name in INTERPRETER_NAMES and isinstance(arguments, dict):
        code = arguments.get("code", arguments.get("command"))
        if isinstance(code, str):
            return "interpreter", code
    parameters = arguments if isinstance(arguments, dict) else {"input": arguments}
    return "plugin", json.dumps({"name": name, "parameters": parameters})
