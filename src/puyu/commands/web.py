"""`puyu web`: the web app alone, in front of any OpenAI-compatible endpoint."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "web",
        help="serve the web app against an OpenAI-compatible endpoint",
        description="Serves the chat page (chat, compare, agent, knowledge base, search) and forwards its /v1 "
        "requests to --api. `puyu serve` already serves the same page at / for its own model.",
    )
    parser.add_argument("--api", required=True, help="the endpoint, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default=None, help="key sent to the endpoint (the browser then needs none)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="port (default %(default)s)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from puyu.web.proxy import create_proxy_app

    app = create_proxy_app(args.api, api_key=args.api_key)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
