"""`puyu chat` shows its settings and has the basics: multi-line input, /help, /retry, /undo, /save."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from puyu.commands.chat import chat_loop
from puyu.generation.generator import Generator
from puyu.generation.sampling import SamplingParams
from puyu.model.init import init_model_folder


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> Generator:
    folder = init_model_folder("internlm2-tiny", tmp_path_factory.mktemp("chat") / "model", seed=3)
    return Generator.from_pretrained(folder)


def recorded(generator: Generator) -> list[list[dict]]:
    seen: list[list[dict]] = []
    original = type(generator).stream_chat

    def recording(messages, params=None, **kwargs):
        seen.append([dict(m) for m in messages])
        return original(generator, messages, params, **kwargs)

    generator.stream_chat = recording  # type: ignore[method-assign]
    return seen


def test_banner_shows_the_settings_in_force(generator: Generator):
    out = Terminal()
    chat_loop(generator, SamplingParams(temperature=0.7, top_p=0.9, max_tokens=64), stdin=Terminal(""), stdout=out)
    assert "internlm2 template; --temperature 0.7, --top-p 0.9, unseeded, --max-tokens 64" in out.getvalue()
    out = Terminal()
    chat_loop(generator, SamplingParams(temperature=0, max_tokens=8), stdin=Terminal("/help\n"), stdout=out)
    assert "greedy (--temperature 0), --max-tokens 8" in out.getvalue()
    assert "/retry" in out.getvalue() and "/save FILE" in out.getvalue()


def test_multi_line_retry_undo_and_save(generator: Generator, tmp_path: Path):
    seen = recorded(generator)
    script = '"""\nfirst line\nsecond line\n"""\nab\\\ncd\n/retry\n/undo\n/save ' + str(tmp_path / "c.json") + "\n"
    out = io.StringIO()
    greedy = SamplingParams(temperature=0, max_tokens=4)
    assert chat_loop(generator, greedy, system="Be brief.", stdin=io.StringIO(script), stdout=out) == 0
    assert seen[0][-1] == {"role": "user", "content": "first line\nsecond line"}
    assert seen[1][-1] == {"role": "user", "content": "ab\ncd"}
    assert seen[2] == seen[1]  # /retry asks again with the same conversation
    replies = out.getvalue().splitlines()
    assert replies[1] == replies[2]  # greedy: the same answer again
    saved = json.loads((tmp_path / "c.json").read_text())["messages"]
    assert [m["role"] for m in saved] == ["system", "user", "assistant"]  # /undo dropped the second exchange
    assert saved[1]["content"] == "first line\nsecond line"
    assert "[saved 3 messages to" in out.getvalue()
