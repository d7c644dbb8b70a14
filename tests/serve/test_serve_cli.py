"""`puyu serve` as a user runs it: a subprocess on loopback, loading behind an open socket, and a
SIGTERM that lets an in-flight stream finish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from serve_support import free_port

from puyu.cli import main


def test_serve_rejects_a_folder_without_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_serve_subprocess_end_to_end(model_folder: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "puyu", "serve", str(model_folder), "--port", str(port), "--api-key", "k"]
    command += ["--model-name", "tiny", "--max-model-len", "512", "--block-size", "8", "--log-level", "warning"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        statuses = set()
        while True:
            try:
                status = httpx.get(f"{base}/health", timeout=5).status_code
            except httpx.TransportError:
                status = None
            statuses.add(status)
            if status == 200:
                break
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, statuses
            time.sleep(0.05)
        assert statuses <= {None, 503, 200}
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
        assert client.models.list().data[0].max_model_len == 512
        reply = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0
        )
        assert reply.usage.completion_tokens >= 1

        # SIGTERM in the middle of a stream: the stream still runs to its end
        stream = client.completions.create(
            model="tiny", prompt="abc", max_tokens=150, stream=True, extra_body={"ignore_eos": True}
        )
        chunks = iter(stream)
        first = next(chunks)
        process.send_signal(signal.SIGTERM)
        rest = list(chunks)
        assert rest[-1].choices[0].finish_reason == "length"
        assert len("".join(c.choices[0].text for c in [first, *rest])) > 0
        # uvicorn re-raises the stop signal once it has shut down cleanly, as a process should
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
