"""Built-in chat templates, written as Jinja sources so they render through the same engine as a
model folder's own template.

Each wraps what the model is trained to produce (an assistant turn's content, its tool-call text
and its end token) in `{% generation %}` blocks, so assistant spans come straight from the render.
All three also accept an empty message list, which lets callers render just the header.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# InternLM2-Chat's ChatML dialect with the Lagent plugin protocol: tools are announced in a
# `system name=<|plugin|>` turn, the assistant calls one with
# `<|action_start|><|plugin|>\n{"name": ..., "parameters": ...}<|action_end|>`, and results come
# back in an `environment name=<|plugin|>` turn. Plain turns match the template InternLM2 ships.
INTERNLM2_SOURCE = """\
{{- bos_token if bos_token is defined else '' }}
{%- set ns = namespace(functions=[]) %}
{%- for tool in tools or [] %}
    {%- set ns.functions = ns.functions + [tool.function if tool.function is defined else tool] %}
{%- endfor %}
{%- set plugin_turn = '<|im_start|>system name=<|plugin|>\\n' + ns.functions | tojson + '<|im_end|>\\n' %}
{%- if ns.functions and not (messages and messages[0].role == 'system') %}
    {{- plugin_turn }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'assistant' %}
        {{- '<|im_start|>assistant\\n' }}
        {%- generation %}
            {{- message.content if message.content is defined else '' }}
            {%- for tool_call in message.tool_calls or [] %}
                {%- set call = tool_call.function if tool_call.function is defined else tool_call %}
                {{- '<|action_start|><|plugin|>\\n{"name": ' + call.name | tojson + ', "parameters": ' }}
                {%- if call.arguments is string %}
                    {{- call.arguments }}
                {%- else %}
                    {{- call.arguments | tojson }}
                {%- endif %}
                {{- '}<|action_end|>' }}
            {%- endfor %}
            {{- '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\\n' }}
    {%- elif message.role == 'tool' %}
        {{- '<|im_start|>environment name=<|plugin|>\\n' + message.content + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- endif %}
    {%- if loop.first and message.role == 'system' and ns.functions %}
        {{- plugin_turn }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# Llama 3.1 Instruct: renders what Meta's published chat template renders (the fixed
# "26 Jul 2024" date line, custom tools in the first user turn, single tool call per turn,
# `builtin_tools` as `<|python_tag|>name.call(...)` ending in <|eom_id|>, tool results as an
# `ipython` turn holding the JSON-encoded content). Unlike Meta's, an arguments value given as
# a JSON string is written as is instead of being encoded a second time.
LLAMA3_SOURCE = """\
{{- bos_token if bos_token is defined else '' }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = '26 Jul 2024' %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- if messages and messages[0].role == 'system' %}
    {%- set system_message = messages[0].content | trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = '' %}
{%- endif %}
{%- set tool_instructions = 'Respond in the format {"name": function name, "parameters": '
    + 'dictionary of argument name and its value}.Do not use variables.\\n\\n' %}
{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}
{%- if builtin_tools is defined or tools is not none %}
    {{- 'Environment: ipython\\n' }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- 'Tools: ' + builtin_tools | reject('equalto', 'code_interpreter') | join(', ') + '\\n\\n' }}
{%- endif %}
{{- 'Cutting Knowledge Date: December 2023\\n' }}
{{- 'Today Date: ' + date_string + '\\n\\n' }}
{%- if tools is not none and not tools_in_user_message %}
    {{- 'You have access to the following functions. ' }}
    {{- 'To call a function, please respond with JSON for a function call.' }}
    {{- tool_instructions }}
    {%- for tool in tools %}
        {{- tool | tojson(indent=4) + '\\n\\n' }}
    {%- endfor %}
{%- endif %}
{{- system_message + '<|eot_id|>' }}
{%- if tools_in_user_message and tools is not none %}
    {%- if not messages %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
    {%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' }}
    {{- 'Given the following functions, please respond with a JSON for a function call ' }}
    {{- 'with its proper arguments that best answers the given prompt.\\n\\n' }}
    {{- tool_instructions }}
    {%- for tool in tools %}
        {{- tool | tojson(indent=4) + '\\n\\n' }}
    {%- endfor %}
    {{- messages[0].content | trim + '<|eot_id|>' }}
    {%- set messages = messages[1:] %}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'tool' or message.role == 'ipython' %}
        {{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- '<|eot_id|>' }}
    {%- elif message.role == 'assistant' and message.tool_calls %}
        {%- if message.tool_calls | length != 1 %}
            {{- raise_exception('This model only supports single tool-calls at once!') }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0] %}
        {%- set tool_call = tool_call.function if tool_call.function is defined else tool_call %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
        {%- generation %}
            {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
                {{- '<|python_tag|>' + tool_call.name + '.call(' }}
                {%- for arg_name, arg_val in tool_call.arguments | items %}
                    {{- arg_name + '="' + arg_val + '"' }}
                    {%- if not loop.last %}
                        {{- ', ' }}
                    {%- endif %}
                {%- endfor %}
                {{- ')' }}
            {%- else %}
                {{- '{"name": "' + tool_call.name + '", "parameters": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}' }}
            {%- endif %}
            {{- '<|eom_id|>' if builtin_tools is defined else '<|eot_id|>' }}
        {%- endgeneration %}
    {%- elif message.role == 'assistant' %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
        {%- generation %}
            {{- message.content | trim + '<|eot_id|>' }}
        {%- endgeneration %}
    {%- else %}
        {{- '<|start_header_id|>' + message.role + '<|end_header_id|>\\n\\n' + message.content | trim + '<|eot_id|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

# Qwen2.5 Instruct: renders what the Qwen2.5 tokenizer_config template renders (default system
# prompt, `# Tools` block, Hermes-style <tool_call> JSON, tool results inside a user turn), and
# likewise writes a JSON-string arguments value as is.
QWEN2_SOURCE = """\
{%- set default_system = 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' %}
{%- set has_system = messages and messages[0].role == 'system' %}
{%- if tools %}
    {{- '<|im_start|>system\\n' + (messages[0].content if has_system else default_system) }}
    {{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n' }}
    {{- 'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}
    {%- for tool in tools %}
        {{- '\\n' + tool | tojson }}
    {%- endfor %}
    {{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments ' }}
    {{- 'within <tool_call></tool_call> XML tags:\\n<tool_call>\\n' }}
    {{- '{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call><|im_end|>\\n' }}
{%- else %}
    {{- '<|im_start|>system\\n' + (messages[0].content if has_system else default_system) + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'system' %}
        {%- if not loop.first %}
            {{- '<|im_start|>system\\n' + message.content + '<|im_end|>\\n' }}
        {%- endif %}
    {%- elif message.role == 'assistant' %}
        {{- '<|im_start|>assistant\\n' }}
        {%- generation %}
            {%- if message.content %}
                {{- message.content }}
            {%- endif %}
            {%- for tool_call in message.tool_calls or [] %}
                {%- if message.content or not loop.first %}
                    {{- '\\n' }}
                {%- endif %}
                {%- set call = tool_call.function if tool_call.function is defined else tool_call %}
                {{- '<tool_call>\\n{"name": "' + call.name + '", "arguments": ' }}
                {%- if call.arguments is string %}
                    {{- call.arguments }}
                {%- else %}
                    {{- call.arguments | tojson }}
                {%- endif %}
                {{- '}\\n</tool_call>' }}
            {%- endfor %}
            {{- '<|im_end|>' }}
        {%- endgeneration %}
        {{- '\\n' }}
    {%- elif message.role == 'tool' %}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""


@dataclass(frozen=True)
class BuiltinSpec:
    """What a built-in template needs besides its source."""

    source: str
    stop_strings: tuple[str, ...]
    # Used when the caller's tokenizer does not name these tokens.
    special_tokens: dict[str, str] = field(default_factory=dict)


BUILTINS: dict[str, BuiltinSpec] = {
    "internlm2": BuiltinSpec(
        source=INTERNLM2_SOURCE,
        stop_strings=("<|im_end|>",),
        special_tokens={"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>"},
    ),
    "llama3": BuiltinSpec(
        source=LLAMA3_SOURCE,
        stop_strings=("<|eot_id|>", "<|eom_id|>"),
        special_tokens={"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    ),
    "qwen2": BuiltinSpec(
        source=QWEN2_SOURCE,
        stop_strings=("<|im_end|>", "<|endoftext|>"),
        special_tokens={"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    ),
}

# Model family (as the model package names it) -> the built-in template it defaults to.
FAMILY_DEFAULTS: dict[str, str] = {
    "internlm2": "internlm2",
    "llama": "llama3",
    "llama3": "llama3",
    "qwen2": "qwen2",
}
