"""A live HTTP server for tests: an ASGI app run by uvicorn in a thread on a free loopback port.

Shared by the server tests (tests/serve) and the evaluation tests that talk to `puyu serve` (tests/eval);
tests/ is on the import path through its conftest.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def free_port() -> int:
    """A loopback port that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(app: Any, grace: float = 5) -> Iterator[str]:
    """Run `app` with uvicorn in a thread on a free loopback port; yields the base URL (…/v1). On exit,
    responses still streaming get `grace` seconds before their connections are cut."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=grace)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
