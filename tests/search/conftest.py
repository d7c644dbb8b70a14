"""The search tests' live server: `puyu serve` over a tiny model whose replies a script writes for every step
(plan, queries, selection, node answers, final answer), with search enabled over in-memory backends."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
serve_support = pytest.importorskip("serve_support", reason="the server test support is not available")

from fakes import PAGES, MemoryBackend, script  # noqa: E402

from puyu.search import SearchConfig, SearcherConfig  # noqa: E402
from puyu.serve.search_api import SearchSettings, enable_search  # noqa: E402


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, MemoryBackend]]]:
    folder = serve_support.make_model_folder(tmp_path_factory.mktemp("search") / "tiny", max_position_embeddings=4096)
    from puyu.serve.app import create_app

    app = create_app(serve_support.engine_factory(folder, script=script)(), model_name="tiny")
    backends = {"memory": MemoryBackend(PAGES), "slow": MemoryBackend(PAGES, delay=60)}
    config = SearchConfig(searcher=SearcherConfig(queries=2, pages=2))
    enable_search(app, SearchSettings(backends=dict(backends), config=config))
    with serve_support.live_server(app) as url:
        yield url, backends
