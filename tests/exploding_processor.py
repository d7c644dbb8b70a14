"""A logits processor that raises: a stand-in for any failure one request causes inside a batched step."""

from __future__ import annotations

import torch


class Explode:
    """Raises RuntimeError("boom") at output position `at`; leaves the logits alone before it."""

    def __init__(self, at: int) -> None:
        self.at = at

    def __call__(self, output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        if len(output_ids) == self.at:
            raise RuntimeError("boom")
        return logits
