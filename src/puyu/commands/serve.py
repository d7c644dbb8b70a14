"""`puyu serve`: an OpenAI-compatible HTTP server over the engine (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from puyu.errors import PuyuError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible HTTP API",
        description="Serves /v1/models, /v1/completions and /v1/chat/completions (streaming, tools, logprobs, "
        "JSON mode), /health and /metrics. The socket opens at once; the model loads behind it (503 until ready).",
    )
    parser.add_argument("model", help="HF model folder (config.json, *.safetensors, tokenizer files)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (default %(default)s)")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1 routes")
    parser.add_argument("--model-name", default=None, help="the name clients send as `model` (default: folder name)")
    parser.add_argument("--max-concurrency", type=int, default=None, help="most HTTP requests handled at once")
    parser.add_argument(
        "--max-queue", type=int, default=None, help="most requests waiting (in the engine or for a slot) before 429"
    )
    parser.add_argument("--template", default=None, help="built-in chat template instead of the folder's own")
    engine = parser.add_argument_group("engine")
    engine.add_argument("--block-size", type=int, default=16, help="tokens per KV-cache block (default %(default)s)")
    engine.add_argument(
        "--num-blocks", type=int, default=None, help="KV-cache blocks (default: from --kv-cache-memory)"
    )
    engine.add_argument("--kv-cache-memory", default="auto", help="KV-cache size, e.g. 2GB (default: auto)")
    engine.add_argument("--kv-cache-dtype", choices=("auto", "int8"), default="auto", help="KV-cache storage")
    engine.add_argument("--max-model-len", type=int, default=None, help="longest prompt + reply (default: the model's)")
    engine.add_argument("--max-num-seqs", type=int, default=64, help="most sequences batched at once")
    engine.add_argument("--max-num-batched-tokens", type=int, default=2048, help="most tokens in one forward")
    engine.add_argument("--no-prefix-caching", action="store_true", help="do not reuse KV blocks of shared prefixes")
    engine.add_argument("--dtype", default="auto", help="float32, bfloat16, float16 or auto (default)")
    engine.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    engine.add_argument("--seed", type=int, default=0, help="sampling seed for requests without their own")
    images = parser.add_argument_group("images (vision models)")
    images.add_argument(
        "--allow-image-urls", action="store_true", help="fetch http(s) image URLs (default: data URLs only)"
    )
    images.add_argument("--max-images", type=int, default=8, help="most images in one request (default %(default)s)")
    images.add_argument(
        "--max-image-pixels", type=int, default=40_000_000, help="most pixels (width x height) of an image"
    )
    images.add_argument("--max-image-bytes", type=int, default=20 * 2**20, help="largest encoded image in bytes")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from puyu.engine.async_engine import AsyncLLMEngine
    from puyu.engine.config import EngineConfig
    from puyu.engine.engine import LLMEngine
    from puyu.model.vision.images import ImageLimits
    from puyu.serve.app import create_app

    folder = Path(args.model)
    if not (folder / "config.json").is_file():
        raise PuyuError(f"{folder} is not a model folder (no config.json)")
    for name, value in (("--max-concurrency", args.max_concurrency), ("--max-queue", args.max_queue),
                        ("--max-images", args.max_images), ("--max-image-pixels", args.max_image_pixels),
                        ("--max-image-bytes", args.max_image_bytes)):  # fmt: skip
        if value is not None and value < 1:
            raise PuyuError(f"{name} must be at least 1, got {value}")
    config = EngineConfig(
        block_size=args.block_size,
        num_blocks=args.num_blocks,
        kv_cache_memory=int(args.kv_cache_memory) if str(args.kv_cache_memory).isdigit() else args.kv_cache_memory,
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        max_model_len=args.max_model_len,
        enable_prefix_caching=not args.no_prefix_caching,
        kv_cache_dtype=args.kv_cache_dtype,
        dtype=args.dtype,
        device=args.device,
        seed=args.seed,
    )
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    limits = ImageLimits(
        max_bytes=args.max_image_bytes,
        max_pixels=args.max_image_pixels,
        max_images=args.max_images,
        allow_urls=args.allow_image_urls,
    )

    def load() -> AsyncLLMEngine:
        engine = LLMEngine.from_pretrained(folder, config, template=args.template)
        if engine.vision is not None:
            engine.vision.limits = limits
        return AsyncLLMEngine(engine, max_queue=args.max_queue)

    failed: list[BaseException] = []
    server: uvicorn.Server | None = None

    def stop(exc: BaseException) -> None:
        failed.append(exc)
        if server is not None:
            server.should_exit = True

    app = create_app(
        load,
        model_name=args.model_name or folder.resolve().name,
        api_key=args.api_key,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        on_load_error=stop,
    )
    # SIGINT/SIGTERM: uvicorn stops accepting, lets in-flight responses finish, then the app's
    # shutdown drains the engine.
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=60)
    )
    server.run()
    if failed:
        print(f"puyu: error: the model failed to load: {failed[0]}", file=sys.stderr)
        return 1
    return 0
