"""`/health` latency of a live `puyu serve` while it rejects or tokenizes oversized prompts.

The server runs as its own process over a random model folder (`--preset`), as in serve_load.py. For each
case one client sends a big completions request while another polls `/health` every 10 ms; reported are
the big request's status and time, and the `/health` latency p50/max during it, beside an idle baseline.

Cases: a 5 MB prompt (refused by its length before tokenizing: 400), a 9 MB body (past the 8 MiB limit:
413), and the longest prompt the length bound lets through to the tokenizer (tokenized off the event loop,
then 400 for the context length). There is no peer: the figures are the server's own, before and during.

    .venv/bin/python benchmarks/serve_hostile_latency.py --json runs/bench/serve_hostile.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from machine import machine_info
from serve_load import MODEL, free_port, percentile, start_server, wait_ready


def health_latencies(base: str, stop: threading.Event) -> list[float]:
    latencies = []
    with httpx.Client(timeout=120) as http:
        while not stop.is_set():
            start = time.perf_counter()
            http.get(f"{base}/health")
            latencies.append(time.perf_counter() - start)
            time.sleep(0.01)
    return latencies


def one_case(base: str, body: bytes) -> dict[str, Any]:
    stop = threading.Event()
    result: list[list[float]] = []
    poller = threading.Thread(target=lambda: result.append(health_latencies(base, stop)))
    poller.start()
    time.sleep(0.2)
    start = time.perf_counter()
    response = httpx.post(
        f"{base}/v1/completions", content=body, headers={"Content-Type": "application/json"}, timeout=300
    )
    elapsed = time.perf_counter() - start
    time.sleep(0.2)
    stop.set()
    poller.join()
    latencies = result[0]
    return {
        "status": response.status_code,
        "code": response.json().get("error", {}).get("code"),
        "request_s": round(elapsed, 3),
        "health_p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "health_max_ms": round(max(latencies) * 1000, 2),
        "health_polls": len(latencies),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="internlm2-tiny", help="model shape (random weights)")
    parser.add_argument("--max-model-len", type=int, default=2048, help="the served context length")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    args.max_num_seqs = 8

    from puyu.model.init import init_model_folder
    from puyu.serve.app import max_token_chars
    from puyu.tokenizer import Tokenizer

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = init_model_folder(
            args.preset, Path(tmp) / "model", overrides={"max_position_embeddings": args.max_model_len}
        )
        bound = args.max_model_len * max_token_chars(Tokenizer.from_pretrained(folder))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(folder, port, args)
        try:
            wait_ready(base, server)
            idle_stop = threading.Event()
            timer = threading.Timer(2.0, idle_stop.set)
            timer.start()
            idle = health_latencies(base, idle_stop)
            results["idle"] = {
                "health_p50_ms": round(percentile(idle, 0.5) * 1000, 2),
                "health_max_ms": round(max(idle) * 1000, 2),
            }
            cases = {
                "prompt_5MB": 5 * 10**6,
                "body_9MB": 9 * 10**6,
                f"prompt_at_length_bound_{bound}_chars": bound,
            }
            for name, chars in cases.items():
                body = json.dumps({"model": MODEL, "prompt": "word " * (chars // 5), "max_tokens": 1}).encode()
                results[name] = one_case(base, body)
                print(name, results[name], flush=True)
        finally:
            server.terminate()
            server.wait(timeout=60)
    results["machine"] = machine_info(["torch", "fastapi", "uvicorn"])
    print(json.dumps(results, indent=2))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
