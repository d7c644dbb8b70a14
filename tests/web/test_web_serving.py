"""Serving the page (no browser): what `/` and `/web/…` answer, that every asset ships with the package, and
the `puyu web --api` proxy checked through the official `openai` client."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import openai
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from serve_support import engine_factory, free_port, live_server

from puyu.cli import main
from puyu.errors import PuyuError
from puyu.serve.app import create_app
from puyu.web import STATIC_DIR, mount_web
from puyu.web.proxy import api_root, create_proxy_app

VENDORED = {"marked.umd.js": "marked", "purify.min.js": "dompurify", "highlight.min.js": "highlight.js"}


@pytest.fixture(scope="module")
def page_client() -> TestClient:
    app = FastAPI()
    mount_web(app)
    return TestClient(app)


def test_page_and_every_asset_it_names_are_served(page_client: TestClient) -> None:
    page = page_client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "img-src 'self' data: blob:" in policy
    names = re.findall(r'(?:src|href)="(web/[^"]+)"', page.text)
    assert len(names) >= 8
    for name in names:
        assert page_client.get(f"/{name}").status_code == 200, name
    # the modules the entry module imports
    for module in re.findall(r'from "\./([\w-]+\.js)"', (STATIC_DIR / "main.js").read_text()):
        response = page_client.get(f"/web/{module}")
        assert response.status_code == 200 and "javascript" in response.headers["content-type"], module
    # KaTeX's stylesheet names its fonts; the first choice (woff2) of each ships
    css = (STATIC_DIR / "vendor/katex/katex.min.css").read_text()
    for font in set(re.findall(r"url\((fonts/[\w-]+\.woff2)\)", css)):
        assert page_client.get(f"/web/vendor/katex/{font}").status_code == 200, font
    assert page_client.get("/web/../mount.py").status_code == 404


def test_no_remote_asset_and_licences_ship() -> None:
    for path in STATIC_DIR.rglob("*"):
        if path.suffix in (".html", ".js", ".css") and "vendor" not in path.parts:
            text = path.read_text()
            assert not re.search(r"""(src|href)=["']https?:|url\(["']?https?:|from ["']https?:""", text), path
    licences = {p.name for p in (STATIC_DIR / "vendor/licences").iterdir()}
    assert {f"{name}.LICENSE" for name in [*VENDORED.values(), "katex"]} <= licences
    for file in VENDORED:
        assert (STATIC_DIR / "vendor" / file).stat().st_size > 10_000


def test_puyu_serve_serves_the_page_without_the_key(tmp_path: Path) -> None:
    def never_loads() -> None:
        raise PuyuError("no model in this test")

    app = create_app(never_loads, model_name="x", api_key="k")  # type: ignore[arg-type]
    with TestClient(app) as client:
        assert client.get("/").status_code == 200  # the page must load to ask for the key
        assert client.get("/web/main.js").status_code == 200
        assert client.get("/v1/models").status_code == 401


def test_api_root() -> None:
    assert api_root("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000"
    assert api_root("https://host/prefix/v1") == "https://host/prefix"
    assert api_root(" http://host:1 ") == "http://host:1"
    for bad in ("127.0.0.1:8000", "ftp://host/v1", "http://"):
        with pytest.raises(PuyuError):
            api_root(bad)


def test_web_command_rejects_a_bad_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["web", "--api", "localhost:8000"]) == 2
    assert capsys.readouterr().err.strip().startswith("puyu: error: --api must be an http(s) URL")


def test_proxy_reports_an_unreachable_endpoint() -> None:
    port = free_port()
    with socket.socket() as nobody:  # nothing listens there
        nobody.bind(("127.0.0.1", port))
        client = TestClient(create_proxy_app(f"http://127.0.0.1:{port}/v1"))
        response = client.get("/v1/models")
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_unreachable" and f"127.0.0.1:{port}" in error["message"]


def test_proxy_matches_the_endpoint_through_the_openai_client(model_folder: Path) -> None:
    upstream_app = create_app(engine_factory(model_folder)(), model_name="tiny", api_key="secret")
    with live_server(upstream_app) as upstream, live_server(create_proxy_app(upstream, api_key="secret")) as proxy:
        direct = openai.OpenAI(base_url=upstream, api_key="secret", max_retries=0)
        proxied = openai.OpenAI(base_url=proxy, api_key="not-needed", max_retries=0)
        request = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "temperature": 0}
        want = direct.chat.completions.create(**request).choices[0].message.content
        assert proxied.chat.completions.create(**request).choices[0].message.content == want
        streamed = proxied.chat.completions.create(**request, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == want
        with pytest.raises(openai.NotFoundError) as missing:  # errors come back as the endpoint wrote them
            proxied.chat.completions.create(**{**request, "model": "nope"})
        assert missing.value.body["code"] == "model_not_found"
        # without --api-key the browser's own header is passed on
        bare = create_proxy_app(upstream)
        with live_server(bare) as bare_url:
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=bare_url, api_key="wrong", max_retries=0).models.list()
            assert openai.OpenAI(base_url=bare_url, api_key="secret", max_retries=0).models.list().data[0].id == "tiny"
