"""Instruction and preference data formats normalised to one chat / preference format, with per-line errors."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from puyu.chat import ChatTemplate
from puyu.data.conversations import (
    ConversionReport,
    convert_chat_file,
    detect_chat_format,
    detect_preference_format,
    normalize_chat_record,
    normalize_preference_record,
    validate_chat_file,
)
from puyu.errors import PuyuError

ALPACA_DIR = Path(__file__).resolve().parents[3] / "shared/data/alpaca"

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def user(text: str, **extra) -> dict:
    return {"role": "user", "content": text, **extra}


def assistant(text: str, **extra) -> dict:
    return {"role": "assistant", "content": text, **extra}


def call(name: str, arguments: dict) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def write_jsonl(path: Path, rows: list) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- chat formats, record by record


def test_alpaca_input_is_appended_to_the_instruction():
    record = {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour", "id": 7}
    assert normalize_chat_record(record) == {
        "messages": [user("Translate to French.\n\nGood morning"), assistant("Bonjour")],
        "id": "7",
    }
    assert normalize_chat_record({"instruction": "Say hi.", "input": "", "output": "Hi!"}) == {
        "messages": [user("Say hi."), assistant("Hi!")]
    }


def test_alpaca_system_and_history_become_earlier_turns():
    record = {
        "system": "你是一个乐于助人的助手。",
        "history": [["你好", "你好！有什么可以帮你？"], ["今天星期几？", "今天星期一。"]],
        "instruction": "谢谢",
        "input": "",
        "output": "不用谢！",
        "source": "belle",
    }
    assert normalize_chat_record(record) == {
        "messages": [
            {"role": "system", "content": "你是一个乐于助人的助手。"},
            user("你好"),
            assistant("你好！有什么可以帮你？"),
            user("今天星期几？"),
            assistant("今天星期一。"),
            user("谢谢"),
            assistant("不用谢！"),
        ],
        "source": "belle",
    }


def test_sharegpt_multi_turn_with_system():
    record = {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "What is 2+2?"},
            {"from": "gpt", "value": "4"},
            {"from": "user", "value": "And 3+3?"},
            {"from": "assistant", "value": "6"},
        ],
        "category": "math",  # other fields are not carried over
    }
    assert normalize_chat_record(record) == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            user("What is 2+2?"),
            assistant("4"),
            user("And 3+3?"),
            assistant("6"),
        ]
    }
    # The top-level system field goes first; repeating the same system turn is not a conflict.
    top = {"system": "Be brief.", "conversations": record["conversations"][1:3]}
    assert normalize_chat_record(top)["messages"][0] == {"role": "system", "content": "Be brief."}
    assert normalize_chat_record({**top, "conversations": record["conversations"][:3]}) == normalize_chat_record(top)


def test_sharegpt_function_call_and_observation_become_tool_calls():
    record = {
        "conversations": [
            {"from": "human", "value": "上海天气怎么样？"},
            {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "上海"}}'},
            {"from": "observation", "value": '{"temp": 21, "sky": "晴"}'},
            {"from": "gpt", "value": "上海现在 21 度，晴。"},
            {"from": "human", "value": "And Paris and Rome?"},
            {"from": "gpt", "value": "Let me check both."},
            # arguments as a JSON string, two calls in one turn, joined onto the reply above
            {
                "from": "function_call",
                "value": '[{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"},'
                ' {"name": "get_weather", "arguments": {"city": "Rome"}}]',
            },
            {"from": "observation", "value": "12 C"},
            {"from": "observation", "value": "18 C"},
            {"from": "gpt", "value": "Paris 12 C, Rome 18 C."},
        ],
        "tools": json.dumps([WEATHER_TOOL]),
    }
    assert normalize_chat_record(record) == {
        "messages": [
            user("上海天气怎么样？"),
            assistant("", tool_calls=[call("get_weather", {"city": "上海"})]),
            {"role": "tool", "content": '{"temp": 21, "sky": "晴"}'},
            assistant("上海现在 21 度，晴。"),
            user("And Paris and Rome?"),
            assistant(
                "Let me check both.",
                tool_calls=[call("get_weather", {"city": "Paris"}), call("get_weather", {"city": "Rome"})],
            ),
            {"role": "tool", "content": "12 C"},
            {"role": "tool", "content": "18 C"},
            assistant("Paris 12 C, Rome 18 C."),
        ],
        "tools": [{"type": "function", "function": WEATHER_TOOL}],
    }


def test_openai_messages_pass_through_with_loss_flags():
    record = {
        "messages": [
            {"role": "system", "content": "Answer with one word."},
            user("Capital of France?"),
            assistant("Paris", loss=False),  # few-shot context, not trained on
            {"role": "user", "content": [{"type": "text", "text": "Capital of "}, {"type": "text", "text": "Japan?"}]},
            assistant("Tokyo", loss=True, tool_calls=[]),
        ],
        "tools": [{"type": "function", "function": WEATHER_TOOL}],
        "id": "ex-1",
    }
    original = copy.deepcopy(record)
    assert normalize_chat_record(record) == {
        "messages": [
            {"role": "system", "content": "Answer with one word."},
            user("Capital of France?"),
            assistant("Paris", loss=False),
            user("Capital of Japan?"),
            assistant("Tokyo", loss=True),
        ],
        "tools": [{"type": "function", "function": WEATHER_TOOL}],
        "id": "ex-1",
    }
    assert record == original  # the input is not changed


def test_openai_tool_calls_and_weight_are_normalised():
    record = {
        "messages": [
            user("Weather in Oslo?"),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
                "weight": 0,
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "-3 C"},
            {"role": "assistant", "content": "It is -3 C in Oslo.", "weight": 1},
        ]
    }
    assert normalize_chat_record(record)["messages"] == [
        user("Weather in Oslo?"),
        assistant("", tool_calls=[{"id": "call_1", **call("get_weather", {"city": "Oslo"})}], loss=False),
        {"role": "tool", "tool_call_id": "call_1", "content": "-3 C"},
        assistant("It is -3 C in Oslo.", loss=True),
    ]


def test_xtuner_conversation_exchanges():
    record = {
        "conversation": [
            {"system": "You are InternLM.", "input": "Who are you?", "output": "I am InternLM."},
            {"input": "用中文说一遍。", "output": "我是书生·浦语。", "output_with_loss": False},
            {"input": "Thanks!", "output": "You're welcome."},
        ]
    }
    assert normalize_chat_record(record) == {
        "messages": [
            {"role": "system", "content": "You are InternLM."},
            user("Who are you?"),
            assistant("I am InternLM."),
            user("用中文说一遍。"),
            assistant("我是书生·浦语。", loss=False),
            user("Thanks!"),
            assistant("You're welcome."),
        ]
    }


def test_format_detection_and_forcing():
    assert detect_chat_format({"instruction": "a", "output": "b"}) == "alpaca"
    assert detect_chat_format({"conversations": [{"from": "human", "value": "a"}]}) == "sharegpt"
    assert detect_chat_format({"conversations": [{"role": "user", "content": "a"}]}) == "openai"
    assert detect_chat_format({"messages": [{"from": "human", "value": "a"}]}) == "sharegpt"
    assert detect_chat_format({"messages": []}) == "openai"
    assert detect_chat_format({"conversation": []}) == "xtuner"
    record = {"instruction": "a", "output": "b", "messages": [user("x"), assistant("y")]}
    assert normalize_chat_record(record, format="alpaca")["messages"] == [user("a"), assistant("b")]
    assert normalize_chat_record(record)["messages"] == [user("x"), assistant("y")]
    with pytest.raises(PuyuError, match="unknown chat format 'llama' \\(expected one of openai, sharegpt"):
        normalize_chat_record(record, format="llama")


@pytest.mark.parametrize(
    ("record", "error"),
    [
        ({"messages": [user("hi"), user("anyone?")]}, "no assistant turn"),
        ({"conversations": [{"from": "human", "value": "hi"}]}, "no assistant turn"),
        ({"messages": [user("q"), assistant("a", loss=False)]}, "no trained turn: every assistant turn has loss false"),
        ({"messages": []}, "empty conversation"),
        ({"conversations": []}, "empty conversation"),
        ({"conversation": []}, "empty conversation"),
        (
            {"messages": [user("q"), {"role": "bot", "content": "a"}]},
            "invalid message: message 1: unknown role 'bot' (expected one of system, user, assistant, tool)",
        ),
        (
            {"conversations": [{"from": "human", "value": "q"}, {"from": "bot", "value": "a"}]},
            "invalid message: turn 1: unknown role 'bot' (expected one of human, user, gpt, assistant, system,",
        ),
        (
            {"messages": [user("q"), assistant("a"), user("more?")]},
            "last turn not assistant: the conversation ends with a 'user' turn",
        ),
        (
            {"messages": [user("q"), {"role": "tool", "content": "x"}, assistant("a")]},
            "invalid message: message 1: a tool result with no assistant tool call",
        ),
        (
            {"messages": [user("q", loss=True), assistant("a")]},
            "invalid message: message 0: loss applies only to assistant turns",
        ),
        (
            {"messages": [user("q"), assistant("a", loss="no")]},
            "invalid message: message 1: loss must be true or false",
        ),
        ({"messages": [user("q"), assistant("a", weight=0.5)]}, "invalid message: message 1: weight must be 0 or 1"),
        (
            {"messages": [user("q"), assistant("a", tool_calls=[call("f", "[1, 2]")])]},
            "invalid message: message 1: tool call 0: arguments must be a JSON object",
        ),
        ({"messages": [user(5), assistant("a")]}, "invalid message: message 0: content must be a string"),
        (
            {"conversations": [{"from": "human", "value": None}]},
            "invalid message: turn 0: 'value' must be a string, got NoneType",
        ),
        (
            {"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "{oops"}]},
            "invalid message: turn 1: function_call is not valid JSON",
        ),
        ({"instruction": "q"}, "missing field: 'output'"),
        ({"instruction": "", "input": "", "output": "a"}, "missing field: 'instruction' and 'input' are both empty"),
        ({"instruction": "q", "output": ["a", "b"]}, "invalid field: 'output' must be a string, got list"),
        (
            {"instruction": "q", "output": "a", "history": [["only one"]]},
            "invalid field: history[0] must be a [question, answer] pair",
        ),
        (
            {"conversation": [{"input": "q", "output": "a"}, {"system": "late", "input": "q", "output": "a"}]},
            "invalid field: conversation[1]: only the first exchange may carry a system prompt",
        ),
        ({"conversation": [{"output": "a"}]}, "missing field: conversation[0]: 'input'"),
        (
            {"system": "A", "messages": [{"role": "system", "content": "B"}, user("q"), assistant("a")]},
            "invalid field: 'system' differs from the system turn",
        ),
        ({"messages": [user("q"), assistant("a")], "tools": "[{bad"}, "invalid tools: not valid JSON"),
        (
            {"messages": [user("q"), assistant("a")], "tools": [{"description": "no name"}]},
            "invalid tools: tools[0]: missing the function name",
        ),
        (
            {"messages": [user("q"), assistant("a")], "id": {"x": 1}},
            "invalid field: 'id' must be a string or an integer, got dict",
        ),
        ({"prompt": "q", "chosen": "a", "rejected": "b"}, "wrong kind: a preference pair"),
        ({"text": "just text"}, "unknown format: keys text match no chat format"),
        ({f"k{i}": i for i in range(10)}, "unknown format: keys k0, k1, k2, k3, k4, k5, k6, k7, ... (2 more) match"),
        (["not", "an", "object"], "not an object: expected a JSON object, got list"),
    ],
)
def test_invalid_chat_records(record, error):
    with pytest.raises(PuyuError) as info:
        normalize_chat_record(record)
    assert str(info.value).startswith(error)


# ---------------------------------------------------------------- preference formats


def test_preference_prompt_with_string_responses():
    record = {"prompt": "Write a haiku about autumn.", "chosen": "Leaves drift...", "rejected": "Autumn is a season."}
    assert detect_preference_format(record) == "prompt"
    assert normalize_preference_record(record) == {
        "prompt": [user("Write a haiku about autumn.")],
        "chosen": [assistant("Leaves drift...")],
        "rejected": [assistant("Autumn is a season.")],
    }


def test_preference_prompt_as_messages_with_message_responses():
    record = {
        "prompt": [{"role": "system", "content": "Be kind."}, user("Critique my poem.")],
        "chosen": [assistant("It has vivid imagery; the ending could be tighter.")],
        "rejected": {"role": "assistant", "content": "It is bad."},
        "system": "Be kind.",
    }
    assert normalize_preference_record(record) == {
        "prompt": [{"role": "system", "content": "Be kind."}, user("Critique my poem.")],
        "chosen": [assistant("It has vivid imagery; the ending could be tighter.")],
        "rejected": [assistant("It is bad.")],
    }


def test_preference_sharegpt_dpo_rows():
    # LLaMA-Factory's dpo_zh_demo shape.
    record = {
        "conversations": [
            {"from": "human", "value": "推荐一本书。"},
            {"from": "gpt", "value": "什么类型的？"},
            {"from": "human", "value": "科幻。"},
        ],
        "chosen": {"from": "gpt", "value": "《三体》。"},
        "rejected": {"from": "gpt", "value": "我不知道。"},
        "system": "你是图书管理员。",
    }
    assert detect_preference_format(record) == "sharegpt"
    assert normalize_preference_record(record) == {
        "prompt": [
            {"role": "system", "content": "你是图书管理员。"},
            user("推荐一本书。"),
            assistant("什么类型的？"),
            user("科幻。"),
        ],
        "chosen": [assistant("《三体》。")],
        "rejected": [assistant("我不知道。")],
    }


def test_preference_openai_context_and_question_and_alpaca_variants():
    openai = {"messages": [user("2+2?")], "chosen": {"role": "assistant", "content": "4"}, "rejected": "5", "id": 3}
    assert detect_preference_format(openai) == "openai"
    assert normalize_preference_record(openai) == {
        "prompt": [user("2+2?")],
        "chosen": [assistant("4")],
        "rejected": [assistant("5")],
        "id": "3",
    }
    question = {"question": "Is the sky blue?", "response_chosen": "Yes, by day.", "response_rejected": "No."}
    assert detect_preference_format(question) == "question"
    assert normalize_preference_record(question) == {
        "prompt": [user("Is the sky blue?")],
        "chosen": [assistant("Yes, by day.")],
        "rejected": [assistant("No.")],
    }
    alpaca = {"instruction": "Summarise.", "input": "A long text.", "chosen": "Short.", "rejected": "A long text."}
    assert detect_preference_format(alpaca) == "alpaca"
    assert normalize_preference_record(alpaca)["prompt"] == [user("Summarise.\n\nA long text.")]


def test_preference_whole_conversations_share_their_prompt():
    # TRL's implicit-prompt form: chosen and rejected are whole conversations.
    chosen = [
        user("Hi"),
        assistant("Hello! How can I help?"),
        user("Tell a joke."),
        assistant("Why did the chicken..."),
    ]
    rejected = [*chosen[:3], assistant("No.")]
    assert detect_preference_format({"chosen": chosen, "rejected": rejected}) == "implicit"
    assert normalize_preference_record({"chosen": chosen, "rejected": rejected}) == {
        "prompt": chosen[:3],
        "chosen": [chosen[3]],
        "rejected": [assistant("No.")],
    }
    # HuggingFaceH4/ultrafeedback_binarized also repeats the last user message as `prompt`.
    ultra = {"prompt": "Tell a joke.", "chosen": chosen, "rejected": rejected, "score_chosen": 8.0}
    assert normalize_preference_record(ultra)["prompt"] == chosen[:3]
    with pytest.raises(PuyuError, match=r"^invalid prompt: the prompt differs"):
        normalize_preference_record({**ultra, "prompt": "Something else"})


@pytest.mark.parametrize(
    ("record", "error"),
    [
        ({"prompt": "q", "chosen": "a"}, "missing field: 'rejected'"),
        ({"prompt": "q", "rejected": "b"}, "missing field: 'chosen'"),
        (
            {"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "a"}},
            "missing field: 'rejected'",
        ),
        ({"prompt": "q", "chosen": "same", "rejected": "same"}, "identical responses"),
        ({"prompt": "  ", "chosen": "a", "rejected": "b"}, "empty prompt"),
        ({"chosen": "a", "rejected": "b"}, "empty prompt"),
        (
            {"prompt": [user("q"), assistant("a")], "chosen": "b", "rejected": "c"},
            "invalid prompt: it ends with a 'assistant' turn",
        ),
        (
            {"prompt": "q", "chosen": [assistant("a"), user("b")], "rejected": "c"},
            "invalid response: 'chosen' must hold assistant turns only",
        ),
        (
            {"prompt": "q", "chosen": 5, "rejected": "c"},
            "invalid field: 'chosen' must be a string, a message or a list",
        ),
        (
            {"prompt": "q", "chosen": {"from": "robot", "value": "a"}, "rejected": "c"},
            "invalid message: turn 0: unknown role 'robot'",
        ),
        (
            {"prompt": "q", "chosen": [{"role": "assistant", "content": 1}], "rejected": "c"},
            "invalid message: chosen: message 0: content must be a string",
        ),
        ({"messages": [user("q"), assistant("a")]}, "wrong kind: a chat record"),
        ({"text": "x"}, "unknown format"),
    ],
)
def test_invalid_preference_records(record, error):
    with pytest.raises(PuyuError) as info:
        normalize_preference_record(record)
    assert str(info.value).startswith(error)


# ---------------------------------------------------------------- files


def test_convert_file_skips_bad_lines_and_reports_them(tmp_path):
    source = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"instruction": "Name a colour.", "output": "Blue."},
            {"messages": [user("hi"), user("hello?")]},
            '{"instruction": "broken", ',
            "",  # blank lines are not records
            {"conversations": [{"from": "human", "value": "你好"}, {"from": "bot", "value": "嗨"}]},
            {"conversations": []},
            {"conversations": [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "你好！"}]},
            {"prompt": "q", "chosen": "a", "rejected": "b"},
            {"conversation": [{"input": "Say nothing.", "output": ""}]},
        ],
    )
    output = tmp_path / "out" / "sft.jsonl"
    report = convert_chat_file([source], output)
    assert isinstance(report, ConversionReport)
    assert read_jsonl(output) == [
        {"messages": [user("Name a colour."), assistant("Blue.")]},
        {"messages": [user("你好"), assistant("你好！")]},
        {"messages": [user("Say nothing."), assistant("")]},
    ]
    assert "你好" in output.read_text(encoding="utf-8")  # written as UTF-8, not \u escapes
    assert (report.converted, report.invalid) == (3, 5)
    assert report.formats == {"alpaca": 1, "openai": 1, "sharegpt": 3, "xtuner": 1}
    assert report.warnings == {"empty assistant turn": 1}
    path = str(source)
    assert report.errors == [
        f"{path}:2: no assistant turn",
        f"{path}:3: malformed json: Expecting property name enclosed in double quotes at column 26",
        f"{path}:5: invalid message: turn 1: unknown role 'bot' (expected one of human, user, gpt, assistant, "
        "system, function_call, observation, tool)",
        f"{path}:6: empty conversation",
        f"{path}:8: wrong kind: a preference pair (it has chosen/rejected); convert it as preference data",
    ]
    assert report.tally.docs["problems/no assistant turn"] == 1
    assert report.to_json()["problem_count"] == 5
    assert report.summary() == (
        "chat: 3 converted, 5 invalid (formats: alpaca 1, openai 1, sharegpt 3, xtuner 1); "
        "warnings: empty assistant turn 1"
    )


def test_convert_preference_file_and_json_list_input(tmp_path):
    rows = [
        {"prompt": "Pick a number.", "chosen": "7", "rejected": "seven hundred"},
        {"prompt": "Pick a letter.", "chosen": "b"},
        {"question": "猫还是狗？", "response_chosen": "都好。", "response_rejected": "狗。"},
    ]
    source = tmp_path / "pairs.json"
    source.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    report = convert_chat_file(source, tmp_path / "dpo.jsonl", kind="preference")
    assert read_jsonl(tmp_path / "dpo.jsonl") == [
        {"prompt": [user("Pick a number.")], "chosen": [assistant("7")], "rejected": [assistant("seven hundred")]},
        {"prompt": [user("猫还是狗？")], "chosen": [assistant("都好。")], "rejected": [assistant("狗。")]},
    ]
    # In a JSON list the number is the record's position.
    assert report.errors == [f"{source}:2: missing field: 'rejected'"]
    assert report.formats == {"prompt": 2, "question": 1}


def test_several_inputs_invalid_utf8_and_malformed_json_list(tmp_path):
    good = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "A?", "output": "A."}])
    bad_bytes = tmp_path / "b.jsonl"
    bad_bytes.write_bytes(b'{"instruction": "B?", "output": "B."}\n{"instruction": "\xff", "output": "x"}\n')
    broken_list = tmp_path / "c.json"
    broken_list.write_text('[{"instruction": "C?", "output": "C."},\n {"instruction": ]', encoding="utf-8")
    output = tmp_path / "all.jsonl"
    report = convert_chat_file([good, bad_bytes, broken_list], output)
    assert [row["messages"][0]["content"] for row in read_jsonl(output)] == ["A?", "B?"]
    assert report.errors == [
        f"{bad_bytes}:2: invalid utf-8: byte 0xff at column 18",
        f"{broken_list}: malformed json: Expecting value (line 2 column 18); the JSON list was not read",
    ]
    assert (report.converted, report.invalid) == (2, 2)


def test_strict_stops_at_the_first_bad_line_and_writes_nothing(tmp_path):
    source = write_jsonl(
        tmp_path / "train.jsonl",
        [{"instruction": "Q", "output": "A"}, {"instruction": "Q"}, {"messages": []}],
    )
    output = tmp_path / "sft.jsonl"
    output.write_text("previous\n", encoding="utf-8")
    with pytest.raises(PuyuError, match=f"^{re.escape(str(source))}:2: missing field: 'output'$"):
        convert_chat_file([source], output, strict=True)
    assert output.read_text(encoding="utf-8") == "previous\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["sft.jsonl", "train.jsonl"]  # no temporary left


def test_validate_only_checks(tmp_path):
    source = write_jsonl(
        tmp_path / "chat.jsonl",
        [
            {"messages": [user("q"), assistant("a")]},
            {"messages": [user("q")]},
            {"messages": [user("q"), assistant("a")]},
        ],
    )
    before = sorted(tmp_path.iterdir())
    report = validate_chat_file(source)
    assert (report.converted, report.invalid, report.errors) == (2, 1, [f"{source}:2: no assistant turn"])
    assert sorted(tmp_path.iterdir()) == before
    assert (
        validate_chat_file(source, "preference").errors[0]
        == f"{source}:1: wrong kind: a chat record (no chosen/rejected); convert it as chat data"
    )


def test_forced_format_applies_to_every_record(tmp_path):
    source = write_jsonl(
        tmp_path / "x.jsonl", [{"instruction": "Q", "output": "A"}, {"messages": [user("q"), assistant("a")]}]
    )
    report = validate_chat_file(source, format="alpaca")
    assert report.formats == {"alpaca": 2}
    assert report.errors == [f"{source}:2: missing field: 'output'"]


def test_user_mistakes_are_one_line_errors(tmp_path):
    with pytest.raises(PuyuError, match=r"missing\.jsonl: no such file"):
        convert_chat_file([tmp_path / "missing.jsonl"], tmp_path / "out.jsonl")
    source = write_jsonl(tmp_path / "x.jsonl", [{"instruction": "Q", "output": "A"}])
    with pytest.raises(PuyuError, match="unknown data kind 'dpo'"):
        validate_chat_file(source, "dpo")
    with pytest.raises(PuyuError, match="unknown preference format 'alpacca'"):
        convert_chat_file(source, tmp_path / "out.jsonl", kind="preference", format="alpacca")
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("name", ["qwen2", "llama3", "internlm2"])
def test_converted_records_render_with_the_builtin_templates(name):
    template = ChatTemplate.builtin(name)
    record = normalize_chat_record(
        {
            "conversations": [
                {"from": "human", "value": "Weather in 北京?"},
                {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "北京"}}'},
                {"from": "observation", "value": "晴, 25 C"},
                {"from": "gpt", "value": "Sunny, 25 C."},
            ],
            "tools": [WEATHER_TOOL],
        }
    )
    rendered = template.render(record["messages"], tools=record.get("tools"))
    trained = "".join(rendered.text[start:end] for start, end in rendered.assistant_spans)
    assert "Sunny, 25 C." in trained
    assert "晴, 25 C" not in trained
    assert "get_weather" in trained


# ---------------------------------------------------------------- real data


def test_real_alpaca_converts_without_errors(tmp_path):
    source = ALPACA_DIR / "alpaca_5000.json"
    if not source.is_file():
        pytest.skip(f"{source} is not present")
    output = tmp_path / "alpaca.jsonl"
    report = convert_chat_file(source, output)
    assert (report.converted, report.invalid, report.errors) == (5000, 0, [])
    assert report.formats == {"alpaca": 5000}
    assert report.warnings == {"empty assistant turn": 2}  # two records in the set have an empty output
    rows = read_jsonl(output)
    assert len(rows) == 5000
    assert rows[1] == {"messages": [user("Arrange the following musical notes\n\nG, B, E"), assistant("E, G, B")]}
