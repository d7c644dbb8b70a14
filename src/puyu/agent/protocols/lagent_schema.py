"""Tools described the way Lagent 0.2 describes them to text protocols (`BaseAction.description`).

`{"name", "description", "parameters": [{"name", "type", "description"}], "required": [...],
"parameter_description"}` with Lagent's type
names (STRING, NUMBER for int, FLOAT, BOOLEAN, Array); the ReAct and InternLM2 prompts embed this form.
"""

from __future__ import annotations

from typing import Any

from puyu.agent.tools import Tool

# Lagent's JsonParser appends this sentence to every tool description.
PARAMETER_DESCRIPTION = (
    "If you call this tool, you must pass arguments in the JSON format {key: value}, "
    "where the key is the parameter name."
)
_TYPES = {"string": "STRING", "integer": "NUMBER", "number": "FLOAT", "boolean": "BOOLEAN", "array": "Array"}


def _lagent_type(schema: dict[str, Any]) -> str:
    if "type" in schema:
        return _TYPES.get(schema["type"], "STRING")
    for option in schema.get("anyOf", []):  # Optional[X] is anyOf [X, null]
        if option.get("type") != "null":
            return _lagent_type(option)
    return "STRING"


def lagent_description(tool: Tool) -> dict[str, Any]:
    """The tool's Lagent 0.2 description (key order as Lagent builds it, since prompts embed its repr)."""
    properties = tool.parameters.get("properties", {})
    parameters = [
        {"name": name, "type": _lagent_type(schema), "description": schema.get("description", "")}
        for name, schema in properties.items()
    ]
    return {
        "name": tool.name,
        "description": tool.description,
        "parameters": parameters,
        "required": list(tool.parameters.get("required", [])),
        "parameter_description": PARAMETER_DESCRIPTION,
    }
