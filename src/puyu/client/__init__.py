"""The one model client for every application (evaluation, agent, knowledge base, search).

client = load_client("models/x")                    # an HF folder, run in this process
client = load_client("http://127.0.0.1:8000")       # any OpenAI-compatible endpoint
client.complete_chat(messages, params, tools=[...]) # → ChatResult(content, tool_calls, finish_reason, …)
for delta in client.stream_chat(messages, params): …
await client.acomplete_chat(…); async for delta in client.astream_chat(…): …
"""

from __future__ import annotations

from typing import Any

from puyu.client.base import ChatDelta, ChatResult, ModelClient, TaskUnsupported, ToolCall, default_chat, load_client

__all__ = [
    "ChatDelta",
    "ChatResult",
    "LocalModel",
    "ModelClient",
    "OpenAIModel",
    "TaskUnsupported",
    "ToolCall",
    "default_chat",
    "load_client",
]


def __getattr__(name: str) -> Any:
    # The implementations import torch / openai: only when asked for.
    if name == "LocalModel":
        from puyu.client.local import LocalModel

        return LocalModel
    if name == "OpenAIModel":
        from puyu.client.openai_http import OpenAIModel

        return OpenAIModel
    raise AttributeError(name)
