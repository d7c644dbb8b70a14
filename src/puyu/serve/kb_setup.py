"""`puyu serve --kb NAME=KB --embedder DIR`: the knowledge-base service from command-line values."""

from __future__ import annotations

import re
from pathlib import Path

from puyu.errors import PuyuError
from puyu.serve.kb_routes import KbService

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_kb_flags(values: list[str]) -> dict[str, Path]:
    """NAME=FOLDER pairs; names are URL-safe and unique.

    Raises:
        PuyuError: a malformed or repeated pair.
    """
    kbs: dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not _NAME.match(name) or not folder:
            raise PuyuError(f"--kb {value!r}: expected NAME=FOLDER with a name of letters, digits, '.', '_', '-'")
        if name in kbs:
            raise PuyuError(f"--kb {name} is given twice")
        kbs[name] = Path(folder)
    return kbs


def kb_service(
    kb_flags: list[str], embedder: str | None, *, host: str, port: int, api_key: str | None, model_name: str
) -> KbService:
    """The service; answers come from this server's own model over loopback HTTP."""
    from puyu.kb.embedders import EncoderEmbedder

    loopback = host if host in ("127.0.0.1", "localhost", "::1") else "127.0.0.1"
    loopback = f"[{loopback}]" if ":" in loopback else loopback

    def client():
        from puyu.client import load_client

        return load_client(f"http://{loopback}:{port}/v1", api_key=api_key, model=model_name, chat=True)

    return KbService(parse_kb_flags(kb_flags), EncoderEmbedder(embedder) if embedder else None, client)
