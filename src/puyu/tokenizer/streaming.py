"""Streaming detokenization: text out as token ids come in, one at a time.

Decoding a single id is wrong in general: a character may be spread over several byte tokens, and
tokenizers that strip a leading space from the first token would eat every word boundary. Like vLLM and
TGI, the detokenizer keeps a small window of ids: `prefix` (ids already shown, kept as context) and the
ids read since. It decodes the window with and without the new ids and emits the difference, holding
back while the decoded tail is U+FFFD (an incomplete UTF-8 sequence). Each step decodes only the window,
so the cost per token does not grow with the length of the sequence.
"""

from __future__ import annotations

from puyu.tokenizer.tokenizer import Tokenizer

_REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Turns a stream of token ids into text pieces.

    `"".join(push(t) for t in ids) + flush() == tokenizer.decode(ids, skip_special_tokens=...)`.

    Args:
        tokenizer: The tokenizer that produced the ids.
        skip_special_tokens: Drop special tokens, as in `Tokenizer.decode`.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = False) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self._reset()

    def _reset(self) -> None:
        # The window: ids[:read] were emitted (they are context only), ids[read:] are pending.
        self._ids: list[int] = []
        self._read = 0
        self._prefix_text = ""  # decode(ids[:read])

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def push(self, token_id: int) -> str:
        """Add one id.

        Args:
            token_id: The next token id.

        Returns:
            The text this id completes ("" while a character is still incomplete).
        """
        self._ids.append(int(token_id))
        text = self._decode(self._ids)
        if len(text) <= len(self._prefix_text) or text.endswith(_REPLACEMENT):
            return ""
        new = text[len(self._prefix_text) :]
        # Slide the window: the ids just emitted become the context for the next ones. Keeping at
        # least one id of context matters for decoders that treat the first token specially.
        del self._ids[: self._read]
        self._read = len(self._ids)
        self._prefix_text = self._decode(self._ids)
        return new

    def flush(self) -> str:
        """End the stream.

        Returns:
            Whatever is still held back (an incomplete character shows as U+FFFD, as in `decode`).
            The detokenizer is then empty and ready for a new stream.
        """
        if self._read == len(self._ids):
            self._reset()
            return ""
        text = self._decode(self._ids)
        rest = text[len(self._prefix_text) :]
        self._reset()
        return rest
