"""Per-sample prediction cache in the output folder: an interrupted run resumes where it stopped.

One SQLite file; each batch of results is committed in one transaction, so a crash loses at most the batch
in flight and never leaves a half-written entry. Keys hash (model id, task, request).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any


def request_key(model_id: str, task: str, request: Any) -> str:
    """Stable key of one model request (its prompt, continuations and decoding settings)."""
    payload = json.dumps([model_id, task, request], ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class PredictionCache:
    """Model outputs by request key.

    Args:
        path: the SQLite file (created with its folder).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS predictions (key TEXT PRIMARY KEY, model TEXT, task TEXT, value TEXT)"
        )
        self._db.commit()

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """The cached values of those keys that are present."""
        found: dict[str, Any] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, value in self._db.execute(f"SELECT key, value FROM predictions WHERE key IN ({marks})", chunk):
                found[key] = json.loads(value)
        return found

    def put_many(self, model: str, task: str, items: dict[str, Any]) -> None:
        """Store values in one transaction."""
        rows = [(key, model, task, json.dumps(value, ensure_ascii=False)) for key, value in items.items()]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])

    def close(self) -> None:
        self._db.close()
