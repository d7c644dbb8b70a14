"""Adapters without merging: `generate/chat --adapter`, `serve --adapters` through the openai client, and an
adapter folder given as a model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from adapter_support import make_adapter
from cli_support import checked, run_puyu
from puyu.finetune.adapter import merge_adapter
from puyu.generation.generator import Generator
from puyu.generation.sampling import SamplingParams
from puyu.model.init import init_model_folder
from server_support import free_port

GREEDY = SamplingParams(max_tokens=12, temperature=0)
QUESTION = [{"role": "user", "content": "What is 2 plus 3?"}]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    base = init_model_folder("internlm2-tiny", root / "base", seed=3)
    folders = {"base": base}
    for name, seed, targets in (("math", 1, ["all-linear"]), ("poet", 2, ["wqkv", "w2"])):
        folders[name] = make_adapter(base, root / name, seed, targets)
        folders[f"{name}-merged"] = merge_adapter(base, folders[name], root / f"{name}-merged")
    return folders


def test_generate_with_adapter_equals_the_merged_model(world: dict[str, Path]):
    expected = Generator.from_pretrained(world["math-merged"]).generate("Zara was born in", GREEDY).text
    assert expected != Generator.from_pretrained(world["base"]).generate("Zara was born in", GREEDY).text
    args = ["--prompt", "Zara was born in", "--temperature", "0", "--max-tokens", "12", "--no-stream"]
    result = checked("generate", str(world["base"]), "--adapter", str(world["math"]), *args)
    assert result.stdout == expected + "\n"


def test_chat_with_adapter_equals_the_merged_model(world: dict[str, Path]):
    expected = Generator.from_pretrained(world["poet-merged"]).chat(QUESTION, GREEDY).content
    args = ["--temperature", "0", "--max-tokens", "12", "--adapter", str(world["poet"])]
    result = checked("chat", str(world["base"]), *args, stdin="What is 2 plus 3?\n")
    assert result.stdout == expected + "\n"


def test_adapter_folder_given_as_a_model_says_what_to_run(world: dict[str, Path], tmp_path: Path):
    recorded = json.loads((world["math"] / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert recorded == str(world["base"].resolve())  # resolvable from any working directory
    result = run_puyu("chat", str(world["math"]))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is a LoRA adapter folder" in result.stderr
    assert f"puyu chat {recorded} --adapter {world['math']}" in result.stderr


def test_serve_adapters_through_the_openai_client(world: dict[str, Path]):
    port = free_port()
    command = [sys.executable, "-m", "puyu", "serve", str(world["base"]), "--port", str(port)]
    command += ["--served-model-name", "tiny", "--adapters", f"math={world['math']}", f"poet={world['poet']}"]
    command += ["--allowed-origins", "http://localhost:3000", "--num-blocks", "64"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base_url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="none", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["tiny", "math", "poet"]

        def ask(model: str) -> str:
            reply = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=12, temperature=0)
            assert reply.model == model
            return reply.choices[0].message.content

        with ThreadPoolExecutor(3) as pool:  # in flight together: batched in the same engine steps
            answers = dict(zip(["tiny", "math", "poet"], pool.map(ask, ["tiny", "math", "poet"]), strict=True))
        assert answers["tiny"] == Generator.from_pretrained(world["base"]).chat(QUESTION, GREEDY).content
        for name in ("math", "poet"):
            assert answers[name] == Generator.from_pretrained(world[f"{name}-merged"]).chat(QUESTION, GREEDY).content
        assert answers["math"] != answers["tiny"]

        # `model` may be left out when asking the base (as in vLLM); an unknown one is a 404
        body = {"messages": QUESTION, "max_tokens": 12, "temperature": 0}
        response = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 200 and response.json()["model"] == "tiny"
        assert response.json()["choices"][0]["message"]["content"] == answers["tiny"]
        with pytest.raises(openai.NotFoundError, match="'tiny', 'math', 'poet'"):
            client.chat.completions.create(model="nope", messages=QUESTION, max_tokens=2)

        preflight = httpx.options(
            f"{base_url}/v1/chat/completions",
            headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.headers.get("access-control-allow-origin") == "http://localhost:3000"
    finally:
        process.terminate()
        log = process.communicate(timeout=60)[0]
    assert "engine ready: device cpu, dtype float32, KV cache 1024 tokens" in log
    assert "serving tiny, math, poet" in log
