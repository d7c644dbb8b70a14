"""`puyu serve`: an OpenAI-compatible HTTP server over the engine (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from puyu.errors import PuyuError
from puyu.serve.limits import DEFAULT_MAX_REQUEST_BYTES


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
    parser.add_argument(
        "--model-name",
        "--served-model-name",
        dest="model_name",
        default=None,
        help="the name clients send as `model` (default: folder name); requests without `model` get this one",
    )
    parser.add_argument(
        "--adapters",
        "--lora-modules",
        nargs="+",
        action="extend",
        default=[],
        metavar="NAME=DIR",
        help="LoRA adapter folders to serve over the base, each as a `model` of its own name, batched together",
    )
    parser.add_argument("--max-concurrency", type=int, default=None, help="most HTTP requests handled at once")
    parser.add_argument(
        "--max-queue", type=int, default=None, help="most requests waiting (in the engine or for a slot) before 429"
    )
    parser.add_argument("--template", default=None, help="built-in chat template instead of the folder's own")
    parser.add_argument(
        "--max-request-bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help="largest request body accepted; larger ones get 413 (default %(default)s)",
    )
    parser.add_argument(
        "--trust-control-tokens",
        action="store_true",
        help="let control-token text in chat messages (e.g. <|im_start|>) act as control tokens; only for "
        "trusted clients (by default message content is plain text)",
    )
    parser.add_argument(
        "--chat-template", default=None, metavar="FILE", help="a Jinja chat template file instead of the folder's own"
    )
    parser.add_argument(
        "--allowed-origins",
        "--allow-origins",
        nargs="+",
        default=[],
        metavar="ORIGIN",
        help="CORS: web origins allowed to call the API from a browser (e.g. http://localhost:3000, or *)",
    )
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
    parser.add_argument(
        "--agent-tools", default="calculator", help="built-in tools offered at /v1/agent (default calculator)"
    )
    parser.add_argument("--agent-workspace", default=None, help="folder for /v1/agent session workspaces")
    parser.add_argument(
        "--kb", action="append", default=[], metavar="NAME=KB", help="serve a knowledge base as model kb:NAME"
    )
    parser.add_argument("--embedder", default=None, help="encoder folder served on /v1/embeddings")
    parser.add_argument(
        "--search-backend",
        action="append",
        default=[],
        metavar="SPEC",
        help="enable deep search (POST /v1/search, /solve, model 'search') over local:KB, searxng:URL, duckduckgo, "
        "brave or bing; repeatable, the first is the default",
    )
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
    from puyu.engine.lora_slots import parse_adapter_specs
    from puyu.model.config import ModelConfig
    from puyu.model.vision.images import ImageLimits
    from puyu.serve.app import create_app
    from puyu.serve.graceful import GracefulServer

    folder = Path(args.model)
    if not (folder / "config.json").is_file():
        if (folder / "adapter_config.json").is_file():
            ModelConfig.from_pretrained(folder)  # raises: says what an adapter folder is and what to run
        raise PuyuError(f"{folder} is not a model folder (no config.json)")
    if args.template is not None and args.chat_template is not None:
        raise PuyuError("give --template (a built-in name) or --chat-template (a file), not both")
    template = args.template
    if args.chat_template is not None:
        template = args.chat_template
        if not Path(template).is_file():
            raise PuyuError(f"--chat-template {template}: no such file")
    adapters = parse_adapter_specs(args.adapters)
    model_name = args.model_name or folder.resolve().name
    if model_name in adapters:
        raise PuyuError(f"--adapters: {model_name!r} is the base model's name; give the adapter another")
    if not 0 <= args.port <= 65535:
        raise PuyuError(f"--port must be in 0..65535, got {args.port}")
    for name, value in (
        ("--max-concurrency", args.max_concurrency),
        ("--max-queue", args.max_queue),
        ("--max-request-bytes", args.max_request_bytes),
        ("--max-images", args.max_images),
        ("--max-image-pixels", args.max_image_pixels),
        ("--max-image-bytes", args.max_image_bytes),
    ):
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
        engine = LLMEngine.from_pretrained(folder, config, template=template, adapters=adapters)
        log_engine(engine, [model_name, *adapters])
        if engine.vision is not None:
            engine.vision.limits = limits
        return AsyncLLMEngine(engine, max_queue=args.max_queue)

    failed: list[BaseException] = []
    server: GracefulServer | None = None

    def stop(exc: BaseException) -> None:
        failed.append(exc)
        if server is not None:
            server.should_exit = True

    kb = None
    if args.kb or args.embedder:
        from puyu.serve.kb_setup import kb_service

        kb = kb_service(args.kb, args.embedder, host=args.host, port=args.port, api_key=args.api_key,
                        model_name=args.model_name or folder.resolve().name)  # fmt: skip
    app = create_app(
        load,
        model_name=model_name,
        api_key=args.api_key,
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        on_load_error=stop,
        agent_tools=[name for name in args.agent_tools.split(",") if name.strip()],
        agent_workspace=args.agent_workspace,
        max_request_bytes=args.max_request_bytes,
        trust_control_tokens=args.trust_control_tokens,
        adapters=tuple(adapters),
        kb=kb,
    )
    if args.allowed_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=args.allowed_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
        )
    if args.search_backend:
        from puyu.search.backends import open_backend
        from puyu.serve.search_api import SearchSettings, enable_search

        enable_search(app, SearchSettings(backends={spec: open_backend(spec) for spec in args.search_backend}))
    # SIGINT/SIGTERM: uvicorn stops accepting, lets in-flight responses finish, then the app's
    # shutdown drains the engine.
    # Streams still open when the grace period ends get an error event and [DONE] first.
    server = GracefulServer(
        uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=60),
        app.state.puyu.end_streams,
    )
    server.run()
    if failed:
        print(f"puyu: error: the model failed to load: {failed[0]}", file=sys.stderr)
        return 1
    return 0


def log_engine(engine, names: list[str]) -> None:
    """One start-up line with what a user tunes first: device, dtype, KV-cache size, the served names."""
    config = engine.config
    tokens = engine.num_blocks * config.block_size
    per_block = engine.runner.pool.bytes_per_block(
        engine.model_config.num_layers,
        engine.model_config.num_kv_heads,
        engine.model_config.head_dim or 0,
        config.block_size,
        engine.model.dtype,
        config.kv_cache_dtype,
    )
    logging.getLogger("puyu.serve").info(
        "engine ready: device %s, dtype %s, KV cache %d tokens (%d blocks of %d, %.1f MiB, %s), "
        "max model length %d; serving %s",
        engine.model.device,
        str(engine.model.dtype).removeprefix("torch."),
        tokens,
        engine.num_blocks,
        config.block_size,
        engine.num_blocks * per_block / 2**20,
        config.kv_cache_dtype,
        engine.max_model_len,
        ", ".join(names),
    )
