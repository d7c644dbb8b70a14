"""`puyu search "question"`: deep search with the plan graph drawn live in the terminal."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from puyu.errors import PuyuError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="deep search: a plan of sub-questions searched in parallel, one cited answer",
        description="Plans sub-questions, answers them in parallel from the backend with [[n]] citations and writes "
        "one cited answer. The plan graph is drawn live; --json prints the result as one JSON object instead.",
    )
    parser.add_argument("question", help="the question")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", dest="model", metavar="DIR|URL", help="an HF model folder (or an http(s) URL)")
    source.add_argument("--api", dest="model", metavar="URL", help="an OpenAI-compatible base URL")
    parser.add_argument("--api-key", default=None, help="API key (default: $OPENAI_API_KEY or none)")
    parser.add_argument("--api-model", default=None, help="model name to request from the API (default: its first)")
    parser.add_argument(
        "--backend", required=True, metavar="SPEC", help="local:KB, searxng:URL, duckduckgo, brave or bing"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON (no live view)")
    budget = parser.add_argument_group("budget")
    budget.add_argument("--max-nodes", type=int, default=8, help="most sub-questions (default %(default)s)")
    budget.add_argument("--max-turns", type=int, default=4, help="most planner turns (default %(default)s)")
    budget.add_argument("--concurrency", type=int, default=4, help="nodes searched at once (default %(default)s)")
    budget.add_argument("--queries", type=int, default=2, help="queries a node writes; 0: the question itself")
    budget.add_argument("--pages", type=int, default=3, help="results a node reads (default %(default)s)")
    budget.add_argument("--node-timeout", type=float, default=120.0, help="seconds per node (default %(default)s)")
    parser.add_argument("--cache-dir", default=None, help="web result cache (default ~/.cache/puyu/search)")
    parser.add_argument("--device", default="auto", help="device for a local model (default auto)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from puyu.client import load_client
    from puyu.search import DeepSearch, SearchConfig, SearcherConfig
    from puyu.search.backends import open_backend

    if not args.question.strip():
        raise PuyuError("the question is empty")
    for name in ("max_nodes", "max_turns", "concurrency", "pages"):
        if getattr(args, name) < 1:
            raise PuyuError(f"--{name.replace('_', '-')} must be at least 1")
    if args.queries < 0 or args.node_timeout <= 0:
        raise PuyuError("--queries must be >= 0 and --node-timeout > 0")
    backend = open_backend(args.backend, cache_dir=args.cache_dir)
    client = load_client(args.model, api_key=args.api_key, model=args.api_model, device=args.device, chat=True)
    config = SearchConfig(
        max_nodes=args.max_nodes,
        max_turns=args.max_turns,
        concurrency=args.concurrency,
        searcher=SearcherConfig(queries=args.queries, pages=args.pages, timeout=args.node_timeout),
    )
    search = DeepSearch(client, backend, config)
    result = asyncio.run(_collect(search, args.question, live=not args.json))
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    if result.get("error"):
        raise PuyuError(result["error"])
    return 0


async def _collect(search: Any, question: str, live: bool) -> dict[str, Any]:
    """Run the search; with `live`, draw the graph and the answer as they come. Returns the result as JSON."""
    from puyu.commands.search_view import SearchView

    view = SearchView(question)
    try:
        if live:
            from rich.console import Console
            from rich.live import Live

            console = Console()
            with Live(view, console=console, refresh_per_second=8, transient=False) as screen:
                async for event in search.run(question):
                    view.update(event)
                    screen.refresh()
            view.print_final(console)
        else:
            async for event in search.run(question):
                view.update(event)
    finally:
        closing = getattr(search.backend, "backend", search.backend)
        if hasattr(closing, "aclose"):
            await closing.aclose()
    return view.result()
