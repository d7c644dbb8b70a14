"""A conversation with its tool state: messages in OpenAI shape, a private workspace, and per-session tool state
(the sandbox kernel). Saved to and loaded from JSON; two sessions never share a workspace or a kernel.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

from puyu.agent.tools import ToolContext
from puyu.errors import PuyuError
from puyu.io import atomic_write_text

_SESSION_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
FORMAT = "puyu-agent-session/1"


def check_session_id(session_id: str) -> str:
    """A session id safe to use as a folder name (it comes from users and HTTP bodies)."""
    if not _SESSION_ID.match(session_id) or session_id in (".", ".."):
        raise PuyuError(f"invalid session id {session_id!r}: use 1-64 letters, digits, '_', '-' or '.'")
    return session_id


class Session:
    """One conversation.

    Args:
        workspace_root: the folder under which this session's workspace (`<root>/<id>`) lives.
        session_id: the id (default: a new random one).
        messages: the conversation so far (OpenAI chat messages).
        tool_state: JSON-able tool state to restore (e.g. the interpreter's executed cells, replayed on first use).
    """

    def __init__(
        self,
        workspace_root: str | os.PathLike[str],
        session_id: str | None = None,
        messages: list[dict] | None = None,
        tool_state: dict[str, Any] | None = None,
    ) -> None:
        self.id = check_session_id(session_id or uuid.uuid4().hex[:16])
        self.messages: list[dict] = list(messages or [])
        self.context = ToolContext(Path(workspace_root) / self.id, state=dict(tool_state or {}))

    @property
    def workspace(self) -> Path:
        return self.context.workspace

    def to_dict(self) -> dict[str, Any]:
        # Live objects (a sandbox kernel) cannot be saved; JSON-able state (the interpreter's cells) can.
        state = {}
        for key, value in self.context.state.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                continue
            state[key] = value
        return {"format": FORMAT, "id": self.id, "messages": self.messages, "tool_state": state}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the session as JSON (atomically)."""
        atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False, indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike[str], workspace_root: str | os.PathLike[str]) -> Session:
        """Read a session saved by `save`; its workspace is `<workspace_root>/<id>`."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PuyuError(f"{path}: not a readable session file ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("messages"), list):
            raise PuyuError(f"{path}: not a puyu agent session (expected format {FORMAT})")
        return cls(workspace_root, data.get("id"), data["messages"], data.get("tool_state") or {})

    def close(self) -> None:
        """Stop the session's kernels (its files stay in the workspace)."""
        self.context.close()
