"""Tools: schemas from hints and docstrings, validation, results, toolkits, the registry and the built-ins."""

from __future__ import annotations

import enum
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

import pydantic
import pytest

from puyu.agent.builtin_tools import BUILTIN_TOOLS, builtin, strip_fence
from puyu.agent.calculator import CalculatorError, calculate
from puyu.agent.tools import Artifact, ToolContext, Toolkit, ToolResult, tool, toolkit_method
from puyu.agent.web import SearxngSearch, fetch_readable, set_web_search_backend
from puyu.errors import PuyuError


class Unit(enum.Enum):
    celsius = "celsius"
    fahrenheit = "fahrenheit"


class Place(pydantic.BaseModel):
    city: str
    country: str | None = None


@tool
def forecast(place: Place, days: list[int], unit: Unit = Unit.celsius, note: str | None = None,
             mode: Literal["fast", "exact"] = "fast") -> dict:  # fmt: skip
    """Forecast the weather.

    Longer explanation here.

    Args:
        place: where
        days: which days ahead
        unit: temperature unit
        note: free text
        mode: how hard to try
    """
    return {"city": place.city, "days": days, "unit": unit.value, "mode": mode}


def test_schema_from_hints_and_docstring():
    spec = forecast.spec()
    assert spec["type"] == "function"
    function = spec["function"]
    assert function["name"] == "forecast"
    assert function["description"] == "Forecast the weather.\n\nLonger explanation here."
    parameters = function["parameters"]
    assert parameters["required"] == ["place", "days"]
    properties = parameters["properties"]
    assert properties["days"] == {"description": "which days ahead", "items": {"type": "integer"}, "type": "array"}
    assert properties["unit"]["default"] == "celsius"
    assert properties["mode"]["enum"] == ["fast", "exact"]
    assert {"type": "null"} in properties["note"]["anyOf"]
    unit_ref = properties["unit"]["$ref"].split("/")[-1]
    assert parameters["$defs"][unit_ref]["enum"] == ["celsius", "fahrenheit"]
    place_ref = properties["place"]["$ref"].split("/")[-1]
    assert parameters["$defs"][place_ref]["required"] == ["city"]


def test_schema_is_valid_json_schema_and_validates_like_it():
    jsonschema = pytest.importorskip("jsonschema")
    schema = forecast.parameters
    jsonschema.Draft202012Validator.check_schema(schema)
    good = {"place": {"city": "Paris"}, "days": [1, 2], "unit": "fahrenheit"}
    jsonschema.validate(good, schema)
    assert forecast.call(good).data == {"city": "Paris", "days": [1, 2], "unit": "fahrenheit", "mode": "fast"}
    bad = {"place": {"city": "Paris"}, "days": ["soon"]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    result = forecast.call(bad)
    assert result.error and "days.0" in result.content


def test_results_as_text_json_and_artifacts(tmp_path):
    context = ToolContext(tmp_path)

    @tool
    def make_file(name: str, context: ToolContext) -> Path:
        """Write a file.

        Args:
            name: file name
        """
        path = context.workspace / name
        path.write_text("x")
        return path

    assert "context" not in make_file.parameters["properties"]
    result = make_file.call({"name": "out.png"}, context)
    assert result.artifacts == [Artifact("out.png", "image/png", context.workspace / "out.png")]
    assert result.content == "file: out.png"
    assert forecast.call({"place": {"city": "A"}, "days": []}).content.startswith("{")


def test_toolkit_methods_are_named_toolkit_dot_method():
    class Maths(Toolkit):
        @toolkit_method
        def double(self, x: int) -> int:
            """Double x.

            Args:
                x: a number
            """
            return 2 * x

        def helper(self) -> None:
            """Not a tool."""

    (double,) = Maths().tools()
    assert double.name == "Maths.double"
    assert double.call({"x": 4}) == ToolResult(content="8", data=8)


def test_registry_builds_by_name_and_rejects_unknown():
    assert BUILTIN_TOOLS.names() == [
        "calculator",
        "fetch_url",
        "list_files",
        "python",
        "read_file",
        "web_search",
        "write_file",
    ]
    assert [t.name for t in builtin("calculator, read_file")] == ["calculator", "read_file"]
    with pytest.raises(PuyuError, match="unknown tool"):
        builtin("calculator,rm_rf")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("(3 + 4) * 12 / 7", "12"), ("2 ** 10", "1024"), ("0.1 + 0.2", "0.3"), ("sqrt(16) + abs(-2)", "6"),
     ("7 // 2 + 7 % 2", "4"), ("-3 ^ 2", "-9"), ("12 × 3 ÷ 4", "9"), ("pi", "3.14159265359")],
)  # fmt: skip
def test_calculator_matches_python_arithmetic(expression, expected):
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    "expression",
    ["__import__('os').system('id')", "().__class__", "[1, 2]", "'a' * 3", "9 ** 9 ** 9", "1 / 0", "x + 1",
     "open('/etc/passwd')", "lambda: 1", ""],
)  # fmt: skip
def test_calculator_refuses_anything_but_arithmetic(expression):
    with pytest.raises(CalculatorError):
        calculate(expression)


def test_file_tools_stay_in_the_workspace(tmp_path):
    context = ToolContext(tmp_path / "ws")
    read_file, write_file, list_files = builtin("read_file,write_file,list_files")
    assert not write_file.call({"path": "notes/a.txt", "content": "hello"}, context).error
    assert read_file.call({"path": "notes/a.txt"}, context).content == "hello"
    assert json.loads(list_files.call({}, context).content) == ["notes/a.txt"]
    (tmp_path / "secret.txt").write_text("secret")
    (context.workspace / "link").symlink_to(tmp_path / "secret.txt")
    for path in ("../secret.txt", str(tmp_path / "secret.txt"), "link"):
        result = read_file.call({"path": path}, context)
        assert result.error and "outside the workspace" in result.content
    assert write_file.call({"path": "../evil.txt", "content": "x"}, context).error
    assert not (tmp_path / "evil.txt").exists()


def test_strip_fence():
    assert strip_fence("```python\nprint(1)\n```") == "print(1)"
    assert strip_fence("print(1)") == "print(1)"


class _FakeSearxng(BaseHTTPRequestHandler):
    def do_GET(self):
        assert self.path.startswith("/search?")
        body = json.dumps(
            {"results": [{"title": "Puyu", "url": "https://example.org/puyu", "content": "a toolkit"}] * 3}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeSearxng)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_web_search_through_a_searxng_json_api(fake_server):
    (web_search,) = builtin("web_search")
    set_web_search_backend(SearxngSearch(fake_server))
    try:
        result = web_search.call({"query": "puyu", "max_results": 2})
    finally:
        set_web_search_backend(None)
    assert result.data == [{"title": "Puyu", "url": "https://example.org/puyu", "snippet": "a toolkit"}] * 2


def test_fetch_url_refuses_local_addresses_and_other_schemes(fake_server):
    for url in (fake_server + "/search?q=x", "file:///etc/passwd", "ftp://example.org/"):
        with pytest.raises(ValueError):
            fetch_readable(url)
