"""Text embedders: a local encoder folder (BERT / XLM-R family, pooled as its sentence-transformers config
says) or any OpenAI-compatible `/v1/embeddings` endpoint (through the official `openai` client).

Vectors come back L2-normalised, so a dot product is the cosine similarity. Each embedder has an
`identity` stored with the index; a knowledge base refuses to be searched with a different one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import PuyuError, one_line

_POOLING_MODES = ("cls", "mean", "max", "lasttoken")
BATCH_SIZE = 32


class Embedder(Protocol):
    identity: dict[str, Any]

    def embed(self, texts: list[str]) -> np.ndarray: ...


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PuyuError(f"{path}: unreadable JSON: {one_line(exc)}") from None


def _pooling_of(folder: Path) -> tuple[str, bool, int | None]:
    """(pooling mode, whether the model normalises, max sequence length) from sentence-transformers' files;
    a plain transformers folder gets mean pooling, as sentence-transformers gives it."""
    mode, normalise, max_length = "mean", False, None
    modules_file = folder / "modules.json"
    if modules_file.is_file():
        modules = _read_json(modules_file)
        for module in modules if isinstance(modules, list) else []:
            kind = str(module.get("type", ""))
            if kind.endswith("Pooling"):
                config = _read_json(folder / str(module.get("path", "")) / "config.json")
                if isinstance(config.get("pooling_mode"), str):  # sentence-transformers 6's form
                    chosen = [config["pooling_mode"]]
                else:
                    chosen = ["cls"] if config.get("pooling_mode_cls_token") else []
                    chosen += [m for m in ("mean", "max") if config.get(f"pooling_mode_{m}_tokens")]
                    chosen += ["lasttoken"] if config.get("pooling_mode_lasttoken") else []
                if len(chosen) != 1 or chosen[0] not in _POOLING_MODES:
                    raise PuyuError(
                        f"{folder}: unsupported pooling {chosen or 'none'} (one of cls, mean, max, lasttoken)"
                    )
                mode = chosen[0]
            elif kind.endswith("Normalize"):
                normalise = True
    bert_config = folder / "sentence_bert_config.json"
    if bert_config.is_file():
        max_length = _read_json(bert_config).get("max_seq_length")
    return mode, normalise, max_length


def _folder_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in ("config.json", "modules.json", "1_Pooling/config.json"):
        if (folder / name).is_file():
            digest.update((folder / name).read_bytes())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:16]


class EncoderEmbedder:
    """A local encoder folder (config.json, weights, tokenizer files; modules.json and 1_Pooling optional).

    Args:
        folder: the model folder.
        device: where to run it ("cpu" by default).
    """

    def __init__(self, folder: str | Path, device: str = "cpu") -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()

        self.folder = Path(folder)
        if not (self.folder / "config.json").is_file():
            raise PuyuError(f"{self.folder} is not an encoder folder (no config.json)")
        self.pooling, self.normalise, max_length = _pooling_of(self.folder)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
            self.model = AutoModel.from_pretrained(str(self.folder)).to(device).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise PuyuError(f"{self.folder}: cannot load the encoder: {one_line(exc)}") from None
        limit = getattr(self.model.config, "max_position_embeddings", 512)
        self.max_length = min(max_length or limit, limit)
        self.device = device
        self.torch = torch
        self.dimension = int(self.model.config.hidden_size)
        self.identity = {
            "kind": "encoder",
            "name": self.folder.resolve().name,
            "path": str(self.folder.resolve()),
            "dim": self.dimension,
            "fingerprint": _folder_fingerprint(self.folder),
        }

    def raw_embed(self, texts: list[str]) -> np.ndarray:
        """Pooled vectors, normalised only when the folder's modules say so (what sentence-transformers gives)."""
        torch = self.torch
        # Batches of similar lengths waste less compute on padding (as sentence-transformers does).
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = []
        for first in range(0, len(texts), BATCH_SIZE):
            batch = self.tokenizer(
                [texts[i] for i in order[first : first + BATCH_SIZE]],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            elif self.pooling == "mean":
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            elif self.pooling == "max":
                pooled = hidden.masked_fill(mask == 0, float("-inf")).max(1).values
            else:  # the last real token of each row (right padding)
                pooled = hidden[torch.arange(hidden.shape[0]), batch["attention_mask"].sum(1) - 1]
            if self.normalise:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out.append(pooled.cpu().numpy())
        if not out:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        vectors[order] = np.concatenate(out)
        return vectors

    def embed(self, texts: list[str]) -> np.ndarray:
        return _normalised(self.raw_embed(texts))


class OpenAIEmbedder:
    """An OpenAI-compatible `/v1/embeddings` endpoint.

    Args:
        base_url: the server's URL (".../v1" is added when missing).
        model: the embedding model's name (default: the first model the server lists).
        api_key: the bearer key, if the server wants one.
    """

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None) -> None:
        import openai

        url = base_url.rstrip("/")
        url = url if url.endswith("/v1") else url + "/v1"
        self.client = openai.OpenAI(base_url=url, api_key=api_key or "none", max_retries=1, timeout=120)
        try:
            self.model = model or self.client.models.list().data[0].id
            probe = self.client.embeddings.create(model=self.model, input=["probe"]).data[0].embedding
        except (openai.OpenAIError, IndexError) as exc:
            raise PuyuError(f"{base_url}: no usable embeddings endpoint: {one_line(exc)}") from None
        self.identity = {"kind": "openai", "name": self.model, "url": url, "dim": len(probe)}

    def embed(self, texts: list[str]) -> np.ndarray:
        import openai

        out: list[list[float]] = []
        for first in range(0, len(texts), BATCH_SIZE):
            try:
                response = self.client.embeddings.create(model=self.model, input=texts[first : first + BATCH_SIZE])
            except openai.OpenAIError as exc:
                raise PuyuError(f"the embeddings endpoint failed: {one_line(exc)}") from None
            out.extend(item.embedding for item in sorted(response.data, key=lambda item: item.index))
        if not out:
            return np.zeros((0, int(self.identity["dim"])), dtype=np.float32)
        return _normalised(np.asarray(out, dtype=np.float32))


def load_embedder(spec: str, model: str | None = None, api_key: str | None = None) -> Embedder:
    """An embedder from a folder path or an http(s) URL."""
    if spec.startswith(("http://", "https://")):
        return OpenAIEmbedder(spec, model=model, api_key=api_key)
    return EncoderEmbedder(spec)


def same_embedder(stored: dict[str, Any] | None, given: dict[str, Any] | None) -> bool:
    """Whether vectors of `given` can be compared with vectors made by `stored` (same model and weights)."""
    if stored is None or given is None:
        return stored is given
    keys = ("kind", "name", "dim", "fingerprint")
    return all(stored.get(key) == given.get(key) for key in keys)
