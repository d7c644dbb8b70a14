"""The names a server answers to: the base model's and one per LoRA adapter (LMDeploy `--adapters`,
vLLM `--lora-modules`), and which one the request being handled asked for.

A request's choice is kept in a context variable for the duration of its handler: the handler, the engine
requests it starts (`asyncio.gather` copies the context into their tasks) and the streaming response it
returns all run in that context, so the chosen name reaches the engine call and every response chunk
without threading it through each helper.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from puyu.serve.errors import APIError


@dataclass(frozen=True)
class ServedModel:
    """A name clients send as `model`, and the adapter behind it (None: the base model alone)."""

    name: str
    adapter: str | None = None


_current: contextvars.ContextVar[ServedModel | None] = contextvars.ContextVar("puyu_served_model", default=None)


@dataclass(frozen=True)
class ServedModels:
    """The base model's name and the adapters' names.

    Args:
        base: the base model's name.
        adapters: the adapters' names (each also the engine's name for it).
    """

    base: str
    adapters: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [self.base, *self.adapters]

    def select(self, requested: str | None) -> ServedModel:
        """The model a request names, made current for its handler; a missing `model` means the base (as in vLLM).

        Raises:
            APIError: 404 for a name this server does not serve.
        """
        if requested is None or requested == self.base:
            chosen = ServedModel(self.base)
        elif requested in self.adapters:
            chosen = ServedModel(requested, requested)
        else:
            served = ", ".join(repr(name) for name in self.names)
            raise APIError(
                404,
                f"the model {requested!r} does not exist (this server serves {served})",
                param="model",
                code="model_not_found",
            )
        _current.set(chosen)
        return chosen

    def current(self) -> ServedModel:
        """The model the request being handled chose (the base outside a request)."""
        return _current.get() or ServedModel(self.base)
