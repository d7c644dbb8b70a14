"""Load test of `puyu serve`: many concurrent streaming clients against a live server on loopback.

The server runs as its own process (`python -m puyu serve`, as a user starts it) over a random model
folder (`--preset`, default `internlm2-tiny`: a small model, so that the HTTP layer, the SSE framing and
the scheduler are what is measured rather than the matmuls). `--clients` asyncio clients (httpx, one
connection each) send streaming chat requests back to back for `--duration` seconds; each prompt is a
random user message of 16..128 characters (the byte-level tokenizer: about one token each) and asks for
16..64 new tokens (`ignore_eos`; the chat end token can still end a reply early), with
`stream_options.include_usage`. A client
starts no new request after the deadline; requests in flight then finish and count.

Reported: requests and errors (a non-200 status, a broken stream, a stream without `[DONE]` or without a
finish reason, a usage count above max_tokens, or a "length" finish short of it), requests/s and generated tokens/s
over the whole run, time to first token (request sent → first content chunk) p50/p99, end-to-end latency
p50/p99, and whether every KV block was free and no request was left in the engine at the end (read from
`/metrics`). There is no peer in this comparison: vLLM and LMDeploy do not install on this machine.

    flock /tmp/puyu-heavy.lock .venv/bin/python benchmarks/serve_load.py --json runs/bench/serve_load.json
    flock /tmp/puyu-heavy.lock .venv/bin/python benchmarks/serve_load.py --duration 10 --clients 50   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from machine import machine_info

MODEL = "bench"


@dataclass
class Tally:
    ttft: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    tokens: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def one_request(http: httpx.AsyncClient, rng: random.Random, tally: Tally) -> None:
    text = "".join(rng.choice(string.ascii_letters + " ") for _ in range(rng.randint(16, 128)))
    max_tokens = rng.randint(16, 64)
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 1.0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }
    start = time.perf_counter()
    first: float | None = None
    done = False
    finish: str | None = None
    usage: dict[str, int] | None = None
    try:
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                tally.errors.append(f"status {response.status_code}: {response.text[:200]}")
                return
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    tally.errors.append(f"stream error: {chunk['error']['message']}")
                    return
                for choice in chunk["choices"]:
                    if first is None and choice["delta"].get("content"):
                        first = time.perf_counter()
                    finish = choice.get("finish_reason") or finish
                usage = chunk.get("usage") or usage
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        tally.errors.append(f"{type(exc).__name__}: {exc}")
        return
    end = time.perf_counter()
    if not (done and finish is not None and usage is not None):
        tally.errors.append(f"incomplete stream (done={done}, finish={finish}, usage={usage is not None})")
        return
    produced = usage["completion_tokens"]
    if produced > max_tokens or (finish == "length" and produced != max_tokens):
        tally.errors.append(f"usage says {produced} tokens with finish {finish!r}; asked for {max_tokens}")
        return
    tally.requests += 1
    tally.tokens += usage["completion_tokens"]
    tally.latency.append(end - start)
    if first is not None:
        tally.ttft.append(first - start)


async def client_loop(base: str, seed: int, deadline: float, tally: Tally) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(300.0)) as http:
        while time.perf_counter() < deadline:
            await one_request(http, rng, tally)


async def run_load(base: str, clients: int, duration: float) -> tuple[Tally, float]:
    tally = Tally()
    start = time.perf_counter()
    deadline = start + duration
    await asyncio.gather(*(client_loop(base, seed, deadline, tally) for seed in range(clients)))
    return tally, time.perf_counter() - start


def read_metrics(base: str) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics", timeout=30).text
    values = {}
    for name in ("kv_blocks_used", "kv_blocks_total", "num_requests_running", "num_requests_waiting"):
        match = re.search(rf"^puyu:{name} (\S+)$", text, re.MULTILINE)
        values[name] = float(match.group(1)) if match else float("nan")
    return values


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_server(folder: Path, port: int, args: argparse.Namespace) -> subprocess.Popen:
    command = [sys.executable, "-m", "puyu", "serve", str(folder), "--port", str(port), "--model-name", MODEL]
    command += ["--max-num-seqs", str(args.max_num_seqs), "--log-level", "warning", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    return subprocess.Popen(command, env=env)


def wait_ready(base: str, server: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not become ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200, help="concurrent streaming clients")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--preset", default="internlm2-tiny", help="model shape (random weights)")
    parser.add_argument("--max-num-seqs", type=int, default=64, help="the engine's batch limit")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    from puyu.model.init import init_model_folder

    with tempfile.TemporaryDirectory() as tmp:
        folder = init_model_folder(args.preset, Path(tmp) / "model", overrides={"vocab_size": 265})
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(folder, port, args)
        try:
            wait_ready(base, server)
            print(f"{args.clients} clients for {args.duration:.0f} s against {base} ...", flush=True)
            tally, elapsed = asyncio.run(run_load(base, args.clients, args.duration))
            after = read_metrics(base)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)

    blocks_free = after["kv_blocks_used"] == 0 and after["num_requests_running"] == 0
    blocks_free = blocks_free and after["num_requests_waiting"] == 0
    result: dict[str, Any] = {
        "clients": args.clients,
        "duration_s": round(elapsed, 1),
        "requests": tally.requests,
        "errors": len(tally.errors),
        "requests_per_s": round(tally.requests / elapsed, 2),
        "tokens_per_s": round(tally.tokens / elapsed, 1),
        "ttft_p50_ms": round(1000 * percentile(tally.ttft, 0.5), 1),
        "ttft_p99_ms": round(1000 * percentile(tally.ttft, 0.99), 1),
        "latency_p50_s": round(percentile(tally.latency, 0.5), 2),
        "latency_p99_s": round(percentile(tally.latency, 0.99), 2),
        "kv_blocks_used_at_end": after["kv_blocks_used"],
        "all_blocks_free_at_end": blocks_free,
        "machine": machine_info(["torch", "fastapi", "uvicorn", "httpx"], preset=args.preset, threads=args.threads),
    }
    for error in sorted(set(tally.errors))[:10]:
        print(f"error: {error}")
    print(
        "\n### Server under load (`benchmarks/serve_load.py`)\n\n"
        f"{args.clients} concurrent streaming chat clients for {result['duration_s']} s, random `{args.preset}` model, "
        f"engine `max_num_seqs` {args.max_num_seqs}, {args.threads} torch thread(s), 16..128-token prompts, "
        f"16..64 new tokens; {result['machine']['cpu']} ({result['machine']['cpu_count']} cores).\n\n"
        "| requests | errors | requests/s | tokens/s | TTFT p50 | TTFT p99 | latency p50 | latency p99 "
        "| blocks free at end |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|:---:|\n"
        f"| {result['requests']} | {result['errors']} | {result['requests_per_s']} | {result['tokens_per_s']} | "
        f"{result['ttft_p50_ms']} ms | {result['ttft_p99_ms']} ms | {result['latency_p50_s']} s | "
        f"{result['latency_p99_s']} s | {'yes' if blocks_free else 'NO'} |\n"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        from puyu.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if not tally.errors and blocks_free else 1


if __name__ == "__main__":
    raise SystemExit(main())
