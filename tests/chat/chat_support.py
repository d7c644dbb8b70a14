"""Shared pieces for the chat tests: reference templates as model folders ship them, sample
conversations, and in-process tokenizers (no downloads)."""

from __future__ import annotations

import json
import string
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

_INTERNLM2_CONFIG = Path("/work/shared/data/internlm2/tokenizer_config.json")
_INTERNLM2_FALLBACK = (
    "{{ bos_token }}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _internlm2_original() -> str:
    if _INTERNLM2_CONFIG.is_file():
        template = json.loads(_INTERNLM2_CONFIG.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, str):
            return template
    return _INTERNLM2_FALLBACK


# The template InternLM2-Chat ships in tokenizer_config.json.
INTERNLM2_ORIGINAL = _internlm2_original()

# Qwen2.5-Instruct's tokenizer_config.json template.
QWEN25_OFFICIAL = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""  # noqa: E501

# Llama-3.1-8B-Instruct's tokenizer_config.json template.
LLAMA31_OFFICIAL = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""  # noqa: E501

# A hand-written ChatML template of the kind fine-tunes ship: no whitespace control (so it relies
# on trim_blocks / lstrip_blocks), `loop.last`, `raise_exception`, `tojson` with options, a
# namespace and the `dict` global.
CHATML_LOOP_LAST = """{% set ns = namespace(calls=0) %}
{% if messages[0]['role'] == 'assistant' %}
    {{ raise_exception('Conversation must not start with the assistant') }}
{% endif %}
{% if tools %}
<|im_start|>system
Tools:
{{ tools | tojson(indent=2) }}<|im_end|>
{% endif %}
{% for message in messages %}
    {{ '<|im_start|>' + message['role'] + '\n' }}
    {% if message.tool_calls is defined %}
        {% for call in message.tool_calls %}
            {% set ns.calls = ns.calls + 1 %}
{{ dict(n=ns.calls, call=call.function) | tojson(separators=(',', ':'), sort_keys=true) }}
        {% endfor %}
    {% else %}
{{ message['content'] }}
    {% endif %}
{{ '<|im_end|>' }}
{% if not loop.last or add_generation_prompt %}

{% endif %}
    {% if loop.last and add_generation_prompt %}
{{ '<|im_start|>assistant\n' }}
    {% endif %}
{% endfor %}"""

# ChatML that marks assistant text itself, with the `-` forms of the generation tag.
CHATML_TAGGED = """{{ bos_token }}{% for message in messages %}
{{- '<|im_start|>' + message['role'] + '\n' }}
{%- if message['role'] == 'assistant' %}
{%- generation -%}
{{ message['content'] + '<|im_end|>' }}
{%- endgeneration -%}
{{ '\n' }}
{%- else %}
{{- message['content'] + '<|im_end|>\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"""


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City name, e.g. 上海"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a timezone",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}
TOOLS = [WEATHER_TOOL, TIME_TOOL]


def weather_call(call_id: str = "call_1", location: str = "Shanghai") -> dict:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": {"location": location, "unit": "celsius"}},
    }


SIMPLE = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello!"},
    {"role": "assistant", "content": "Hi there. How can I help?"},
]
MULTI_TURN = [
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "  And 3+3?\n"},
    {"role": "assistant", "content": "6, 书生浦语 says.  "},
    {"role": "user", "content": "Thanks"},
]
TOOL_CHAT = [
    {"role": "system", "content": "Answer with tools when useful."},
    {"role": "user", "content": "Weather in Shanghai?"},
    {"role": "assistant", "content": "Let me check.", "tool_calls": [weather_call()]},
    {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": '{"temperature": 22}'},
    {"role": "assistant", "content": "It is 22 degrees in Shanghai."},
]
TOOL_CHAT_NO_CONTENT = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [weather_call("call_7", "Paris")]},
    {"role": "tool", "tool_call_id": "call_7", "content": "sunny"},
    {"role": "assistant", "content": "Sunny in Paris."},
    {"role": "user", "content": "And now?"},
]
PARALLEL_CALLS = [
    {"role": "user", "content": "Weather and time in Tokyo?"},
    {
        "role": "assistant",
        "tool_calls": [
            weather_call("call_a", "Tokyo"),
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": {"tz": "Asia/Tokyo"}}},
        ],
    },
    {"role": "tool", "tool_call_id": "call_a", "content": "rain"},
    {"role": "tool", "tool_call_id": "call_b", "content": "09:00"},
    {"role": "assistant", "content": "Rainy, 9am."},
]

CONVERSATIONS = {
    "simple": (SIMPLE, None),
    "multi_turn": (MULTI_TURN, None),
    "tools": (TOOL_CHAT, TOOLS),
    "tools_no_content": (TOOL_CHAT_NO_CONTENT, TOOLS),
    "parallel_calls": (PARALLEL_CALLS, TOOLS),
}

CHAT_SPECIAL_TOKENS = [
    "<s>",
    "</s>",
    "<unk>",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|action_start|>",
    "<|action_end|>",
    "<|plugin|>",
    "<|interpreter|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
]


def char_tokenizer() -> Tokenizer:
    """A `tokenizers` model with one token per character and the chat control tokens added."""
    chars = sorted(set(string.printable) | set("书生浦语上海"))
    vocab = {"<unk>": 0}
    for char in chars:
        vocab.setdefault(char, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in CHAT_SPECIAL_TOKENS])
    return tokenizer


def hf_tokenizer(special_tokens: dict[str, str], chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """A real `transformers` fast tokenizer, built in-process."""
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=char_tokenizer(), **special_tokens)
    tokenizer.chat_template = chat_template
    return tokenizer


class OffsetsTokenizer:
    """Stand-in for puyu's tokenizer: just the `encode_with_offsets` method `ChatTemplate.encode` uses."""

    def __init__(self) -> None:
        self._tokenizer = char_tokenizer()

    def encode_with_offsets(
        self, text: str, add_special_tokens: bool = True
    ) -> tuple[list[int], list[tuple[int, int]]]:
        encoding = self._tokenizer.encode(text, add_special_tokens=add_special_tokens)
        return encoding.ids, [tuple(offset) for offset in encoding.offsets]
