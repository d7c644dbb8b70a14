"""Knowledge bases and embeddings over HTTP, mounted on the OpenAI-compatible app.

- `model: "kb:NAME"` on `/v1/chat/completions`: the assistant's answer; `choices[0].message` (or, streamed,
  the last chunk's `delta`) carries `citations`, `rejected` and `reason` beside `content`.
- `GET /v1/kb`, `POST /v1/kb/{name}/files` (multipart `file`, repeatable), `GET /v1/kb/{name}/chunks/{id}`.
- `POST /v1/embeddings` (OpenAI's shape, float or base64) for an encoder folder.

The answers come from the server's own model through the model client (over loopback HTTP), so this
module never touches the engine.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from puyu.errors import PuyuError, one_line
from puyu.generation.sampling import SamplingParams
from puyu.kb import KnowledgeBase, build
from puyu.kb.answer import Answer
from puyu.kb.assistant import Assistant
from puyu.kb.embedders import EncoderEmbedder
from puyu.kb.files import kb_suffix
from puyu.serve.errors import APIError, error_body
from puyu.serve.schemas import message_dicts

logger = logging.getLogger("puyu.serve.kb")

PREFIX = "kb:"
MAX_UPLOAD_BYTES = 64 << 20
MAX_EMBED_INPUTS = 2048
_SAFE_NAME = re.compile(r"[^\w.\- ]+", re.UNICODE)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    input: str | list[str] = Field(min_length=1)
    model: str
    encoding_format: str = "float"
    dimensions: int | None = None


@dataclass
class ServedKb:
    """One knowledge base a server offers, reopened after each upload."""

    name: str
    folder: Path
    kb: KnowledgeBase
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class KbService:
    """The knowledge bases and the embedder a server offers.

    Args:
        kbs: name → knowledge base folder (each opened with its own embedder, BM25 alone if none).
        embedder: an encoder folder for `/v1/embeddings`, or None.
        client_factory: builds the model client the answers come from (called once, in a thread, on the
            first question, when the server is up).
    """

    def __init__(
        self, kbs: dict[str, Path], embedder: EncoderEmbedder | None, client_factory: Callable[[], Any] | None
    ) -> None:
        self.kbs = {name: ServedKb(name, Path(folder), KnowledgeBase.open(folder)) for name, folder in kbs.items()}
        self.embedder = embedder
        self.embed_lock = threading.Lock()
        self.client_factory = client_factory
        self.client: Any = None

    def serves(self, model: str) -> bool:
        return model.startswith(PREFIX)

    def model_ids(self) -> list[str]:
        ids = [PREFIX + name for name in self.kbs]
        return ids + ([self.embedder.identity["name"]] if self.embedder is not None else [])

    def served(self, name: str) -> ServedKb:
        if name not in self.kbs:
            raise APIError(404, f"no knowledge base {name!r} (this server has: {', '.join(self.kbs) or 'none'})",
                           param="model", code="model_not_found")  # fmt: skip
        return self.kbs[name]

    async def model_client(self) -> Any:
        if self.client is None:
            if self.client_factory is None:
                raise APIError(500, "this server has no model to answer with", code="no_model")
            try:
                self.client = await asyncio.to_thread(self.client_factory)
            except PuyuError as exc:
                raise APIError(503, f"the model is not ready: {exc}", code="model_loading") from None
        return self.client

    # ------------------------------------------------------------------------------------------ chat

    async def chat(self, body: Any) -> Response:
        served = self.served(body.model[len(PREFIX) :])
        question, history = _question_and_history(body.messages)
        max_tokens = body.max_completion_tokens or body.max_tokens or 384
        params = SamplingParams(max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p, seed=body.seed)
        assistant = Assistant(served.kb, await self.model_client(), params=params)
        reply_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not body.stream:
            answer = await assistant.aask(question, history)
            message = {"role": "assistant", "content": answer.answer, **_extra_fields(answer)}
            return JSONResponse({
                "id": reply_id, "object": "chat.completion", "created": created, "model": body.model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            })  # fmt: skip

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": body.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}  # fmt: skip

        async def events() -> AsyncIterator[dict[str, Any]]:
            yield chunk({"role": "assistant", "content": ""})
            async for item in assistant.astream(question, history):
                if isinstance(item, Answer):
                    yield chunk(_extra_fields(item), "stop")
                else:
                    yield chunk({"content": item})

        return StreamingResponse(_sse(events()), media_type="text/event-stream")

    # ------------------------------------------------------------------------------------------ kb routes

    def list_kbs(self) -> dict[str, Any]:
        data = []
        for name, served in self.kbs.items():
            info = served.kb.describe()
            data.append({"name": name, "documents": info["documents"], "chunks": info["chunks"],
                         "embedder": info["embedder"], "calibrated": info["calibrated"]})  # fmt: skip
        return {"data": data}

    def chunk(self, name: str, chunk_id: str) -> dict[str, Any]:
        chunk = self.served(name).kb.by_id.get(chunk_id)
        if chunk is None:
            raise APIError(404, f"no chunk {chunk_id!r} in {name!r}", code="chunk_not_found")
        return {"chunk_id": chunk.id, "source": chunk.source, "start": chunk.start, "end": chunk.end,
                "text": chunk.text, "heading": chunk.heading}  # fmt: skip

    async def upload(self, name: str, request: Request) -> dict[str, Any]:
        served = self.served(name)
        try:
            form = await request.form(max_files=64, max_part_size=MAX_UPLOAD_BYTES)
        except Exception as exc:  # starlette raises several types for malformed multipart bodies
            raise APIError(400, f"expected multipart/form-data with 'file' fields: {one_line(exc)}") from None
        uploads = [item for item in form.getlist("file") if hasattr(item, "read")]
        if not uploads:
            raise APIError(400, "no 'file' field in the form", param="file")
        skipped: list[dict[str, str]] = []
        saved: list[Path] = []
        folder = served.folder / "uploads"
        async with served.lock:
            for upload in uploads:
                filename = _safe_name(upload.filename or "")
                data = await upload.read(MAX_UPLOAD_BYTES + 1)
                if not filename or kb_suffix(Path(filename)) is None:
                    skipped.append({"file": upload.filename or "", "reason": "unsupported file type"})
                elif len(data) > MAX_UPLOAD_BYTES:
                    skipped.append({"file": filename, "reason": f"larger than {MAX_UPLOAD_BYTES >> 20} MiB"})
                elif not data.strip():
                    skipped.append({"file": filename, "reason": "empty file"})
                else:
                    folder.mkdir(parents=True, exist_ok=True)
                    (folder / filename).write_bytes(data)
                    saved.append(folder / filename)
            report = None
            if saved:
                kb = served.kb
                report = await asyncio.to_thread(build, saved, served.folder, embedder=kb.embedder)
                served.kb = await asyncio.to_thread(KnowledgeBase.open, served.folder, kb.embedder)
                for problem in report.problems:
                    skipped.append({"file": Path(problem["source"]).name, "reason": problem["message"]})
        names = lambda paths: [Path(p).name for p in paths]  # noqa: E731
        return {
            "added": names(report.added) if report else [],
            "changed": names(report.changed) if report else [],
            "removed": [],
            "skipped": skipped,
            "chunks": len(served.kb.chunks),
        }

    def embeddings(self, body: EmbeddingRequest) -> dict[str, Any]:
        if self.embedder is None:
            raise APIError(404, "this server has no embedding model (start it with --embedder DIR)",
                           param="model", code="model_not_found")  # fmt: skip
        if body.model != self.embedder.identity["name"]:
            raise APIError(404, f"the embedding model {body.model!r} does not exist "
                           f"(this server embeds with {self.embedder.identity['name']!r})",
                           param="model", code="model_not_found")  # fmt: skip
        texts = [body.input] if isinstance(body.input, str) else body.input
        if len(texts) > MAX_EMBED_INPUTS:
            raise APIError(400, f"at most {MAX_EMBED_INPUTS} inputs per request", param="input")
        if body.encoding_format not in ("float", "base64"):
            raise APIError(400, "encoding_format must be 'float' or 'base64'", param="encoding_format")
        if body.dimensions is not None and body.dimensions != self.embedder.dimension:
            raise APIError(400, f"this model gives {self.embedder.dimension} dimensions", param="dimensions")
        with self.embed_lock:
            vectors = self.embedder.raw_embed(texts).astype(np.float32)
            tokens = sum(len(ids) for ids in self.embedder.tokenizer(texts, truncation=True)["input_ids"])
        data = []
        for index, vector in enumerate(vectors):
            value = base64.b64encode(vector.astype("<f4").tobytes()).decode() if body.encoding_format == "base64" \
                else vector.tolist()  # fmt: skip
            data.append({"object": "embedding", "index": index, "embedding": value})
        return {"object": "list", "data": data, "model": body.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip

    def mount(self, app: FastAPI) -> None:
        """Add the kb and embeddings routes to `app` (chat and /v1/models call `chat` and `model_ids`)."""

        @app.get("/v1/kb")
        async def list_kbs() -> Response:
            return JSONResponse(self.list_kbs())

        @app.post("/v1/kb/{name}/files")
        async def upload(name: str, request: Request) -> Response:
            return JSONResponse(await self.upload(name, request))

        @app.get("/v1/kb/{name}/chunks/{chunk_id}")
        async def get_chunk(name: str, chunk_id: str) -> Response:
            return JSONResponse(self.chunk(name, chunk_id))

        @app.post("/v1/embeddings")
        async def embeddings(body: EmbeddingRequest) -> Response:
            return JSONResponse(await asyncio.to_thread(self.embeddings, body))


def _text_of(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # typed parts: the text ones
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return None


def _question_and_history(messages: list[dict[str, Any]]) -> tuple[str, list[dict]]:
    """The last user message is the question; earlier user and assistant turns are the history."""
    messages = message_dicts(messages)
    last = messages[-1]
    question = _text_of(last.get("content")) if isinstance(last, dict) and last.get("role") == "user" else None
    if not question or not question.strip():
        raise APIError(400, "the last message must be a user message with text", param="messages")
    history = []
    for message in messages[:-1]:
        text = _text_of(message.get("content")) if isinstance(message, dict) else None
        if message.get("role") in ("user", "assistant") and text:
            history.append({"role": message["role"], "content": text})
    return question[:4096], history[-8:]


def _extra_fields(answer: Answer) -> dict[str, Any]:
    citations = [
        {
            "n": c.n,
            "source": Path(c.source).name,
            "chunk_id": c.chunk_id,
            "start": c.start,
            "end": c.end,
            "text": c.text,
        }
        for c in answer.citations
    ]
    return {"citations": citations, "rejected": answer.rejected, "reason": answer.reason}


def _safe_name(filename: str) -> str:
    """A plain file name from an uploaded one: no folders, no hidden files, no odd characters."""
    name = _SAFE_NAME.sub("_", filename.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")
    return name[:200]


async def _sse(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    try:
        async for event in events:
            yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
    except (asyncio.CancelledError, GeneratorExit):
        raise
    except Exception as exc:
        logger.exception("knowledge-base stream failed")
        yield f"data: {json.dumps(error_body(500, f'the answer failed: {one_line(exc)}'))}\n\n"
    yield "data: [DONE]\n\n"
