"""`puyu serve --kb NAME=KB --embedder DIR` through the official `openai` client, answers from the server's
own (tiny, scripted) model over loopback HTTP."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from kb_support import write_corpus

from puyu.kb import build
from puyu.kb.embedders import EncoderEmbedder
from puyu.serve.app import create_app
from puyu.serve.kb_routes import KbService
from puyu.serve.kb_setup import kb_service, parse_kb_flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from serve_support import MODEL_NAME, engine_factory, live_server, make_model_folder

REPLY = "It listens on port 8000 [1]."
QUESTION = "what port does the server listen on"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, encoder_folder: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("kbserve")
    build([write_corpus(root / "docs")], root / "kb", chunk_size=120)
    model = make_model_folder(root / "tiny")
    engine = engine_factory(model, script=lambda prompt: REPLY if "Sources:" in prompt else "3")()
    service = KbService({"docs": root / "kb"}, EncoderEmbedder(encoder_folder), None)
    with live_server(create_app(engine, model_name=MODEL_NAME, kb=service)) as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        service.client_factory = kb_service([], None, host="127.0.0.1", port=port, api_key=None,
                                            model_name=MODEL_NAME).client_factory  # fmt: skip
        yield url, root


@pytest.fixture(scope="module")
def client(server: tuple[str, Path]) -> openai.OpenAI:
    return openai.OpenAI(base_url=server[0], api_key="unused", max_retries=0)


def test_models_list_the_kb_and_the_embedder(client: openai.OpenAI, encoder_folder: Path) -> None:
    ids = [model.id for model in client.models.list()]
    assert ids == [MODEL_NAME, "kb:docs", encoder_folder.name]


def test_chat_answer_carries_citations(client: openai.OpenAI, server: tuple[str, Path]) -> None:
    reply = client.chat.completions.create(model="kb:docs", messages=[{"role": "user", "content": QUESTION}])
    message = reply.choices[0].message
    assert message.content == REPLY
    extra = message.model_extra
    assert extra["rejected"] is False and extra["reason"] is None
    citation = extra["citations"][0]
    assert set(citation) == {"n", "source", "chunk_id", "start", "end", "text"} and citation["n"] == 1
    text = (server[1] / "docs" / citation["source"]).read_text()
    assert text[citation["start"] : citation["end"]] == citation["text"]


def test_streamed_answer_ends_with_the_extra_fields(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="kb:docs", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == REPLY
    last = chunks[-1].choices[0]
    assert last.finish_reason == "stop" and last.delta.model_extra["citations"][0]["n"] == 1


def test_kb_routes(server: tuple[str, Path]) -> None:
    base = server[0]
    listing = httpx.get(f"{base}/kb").json()["data"]
    assert listing[0]["name"] == "docs" and listing[0]["embedder"] is None and listing[0]["calibrated"] is False
    files = [
        ("file", ("faq.md", b"# FAQ\n\nRefunds take five days.\n", "text/markdown")),
        ("file", ("../../evil.md", b"# Evil\n\nPath tricks stay inside.\n", "text/markdown")),
        ("file", ("photo.png", b"\x89PNG", "image/png")),
        ("file", ("blank.txt", b"  \n", "text/plain")),
    ]
    result = httpx.post(f"{base}/kb/docs/files", files=files).json()
    assert result["added"] == ["evil.md", "faq.md"] and result["removed"] == []
    assert {s["file"] for s in result["skipped"]} == {"photo.png", "blank.txt"}
    assert (server[1] / "kb" / "uploads" / "evil.md").is_file() and result["chunks"] > listing[0]["chunks"]
    found = httpx.post(f"{base}/chat/completions", json={"model": "kb:docs", "messages": [
        {"role": "user", "content": "how long do refunds take"}]}).json()  # fmt: skip
    chunk_id = found["choices"][0]["message"]["citations"][0]["chunk_id"]
    chunk = httpx.get(f"{base}/kb/docs/chunks/{chunk_id}").json()
    assert chunk["text"] == "# FAQ\n\nRefunds take five days." and chunk["chunk_id"] == chunk_id
    assert httpx.get(f"{base}/kb/docs/chunks/nope").status_code == 404
    assert httpx.post(f"{base}/kb/docs/files", content=b"x").status_code == 400


def test_bad_kb_requests_fail_alone(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="kb:nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="kb:docs", messages=[{"role": "assistant", "content": "hi"}])
    assert client.chat.completions.create(model="kb:docs", messages=[{"role": "user", "content": QUESTION}])


def test_embeddings_equal_the_embedder_and_sentence_transformers(client: openai.OpenAI, encoder_folder: Path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = ["BM25 ranks documents", "知识库助手", "the server listens on port 8000"]
    served = client.embeddings.create(model=encoder_folder.name, input=texts)  # base64 on the wire
    vectors = np.asarray([item.embedding for item in served.data])
    np.testing.assert_allclose(vectors, EncoderEmbedder(encoder_folder).raw_embed(texts), atol=1e-6)
    np.testing.assert_allclose(vectors, SentenceTransformer(str(encoder_folder), device="cpu").encode(texts), atol=1e-5)
    floats = client.embeddings.create(model=encoder_folder.name, input="x", encoding_format="float")
    assert len(floats.data[0].embedding) == 32 and served.usage.prompt_tokens > 0
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="other", input="x")


def test_kb_flags() -> None:
    assert parse_kb_flags(["a=/x", "b.c=y"]) == {"a": Path("/x"), "b.c": Path("y")}
    for bad in (["noequals"], ["a=/x", "a=/y"], ["../x=/y"], ["a="]):
        with pytest.raises(Exception, match="--kb"):
            parse_kb_flags(bad)


def test_serve_cli_refuses_bad_kb_flags_in_one_line(tmp_path: Path, capsys) -> None:
    from puyu.cli import main

    model = make_model_folder(tmp_path / "tiny")
    assert main(["serve", str(model), "--kb", "noequals"]) == 2
    assert main(["serve", str(model), "--kb", f"docs={tmp_path / 'missing'}"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and "NAME=FOLDER" in errors[0] and "not a knowledge base" in errors[1]
