"""What `Tokenizer` needs from a backend: SentencePiece (`tokenizer.model`) or Hugging Face `tokenizers`
(`tokenizer.json`)."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from typing import Protocol

from puyu.tokenizer.special_tokens import AddedToken

# The character span (start, end) of each token id in the encoded text.
Offsets = list[tuple[int, int]]


class Backend(Protocol):
    """A raw tokenizer plus its added tokens; BOS/EOS, named special tokens and files are `Tokenizer`'s job."""

    kind: str  # "sentencepiece" or "tokenizers", as `Tokenizer.backend_kind` reports it
    file_name: str  # the file `serialize` produces
    tokenizer_class: str  # the transformers class to name in tokenizer_config.json
    vocab_size: int  # largest id + 1, added tokens included
    added: dict[int, AddedToken]  # id -> added token

    def add_tokens(self, tokens: Iterable[AddedToken]) -> None:
        """Add tokens declared by a config, keeping their flags."""
        ...

    def add_special(self, content: str) -> None:
        """Make `content` a special added token (a no-op when it is one already)."""
        ...

    def default_token(self, which: str) -> str | None:
        """The model's own token for `which` ("bos_token", "eos_token", "unk_token" or "pad_token"), if any."""
        ...

    def encode(self, text: str) -> list[int]: ...

    def encode_plain(self, text: str) -> list[int]:
        """Ids of `text` with no added token matched (user content inside a chat)."""
        ...

    def encode_with_offsets(self, text: str) -> tuple[list[int], Offsets]: ...

    def decode(self, ids: list[int], skip_ids: AbstractSet[int] | None) -> str:
        """Text of `ids`, dropping those in `skip_ids` and any outside the vocabulary."""
        ...

    def token_to_id(self, token: str) -> int | None: ...

    def id_to_token(self, token_id: int) -> str | None: ...

    def serialize(self, add_bos: bool, bos_id: int | None, add_eos: bool, eos_id: int | None) -> bytes:
        """The contents of `file_name`, agreeing with how the tokenizer adds BOS/EOS where the format can say."""
        ...
