"""The Hugging Face `tokenizers` backend (`tokenizer.json`); it matches its own added tokens in text."""

from __future__ import annotations

import re
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

from puyu.errors import PuyuError, one_line
from puyu.tokenizer.backend import Offsets
from puyu.tokenizer.files import TOKENIZER_JSON
from puyu.tokenizer.special_tokens import AddedToken


class HFBackend:
    """A Hugging Face `tokenizers.Tokenizer`; it splits its own added tokens."""

    kind = "tokenizers"
    file_name = TOKENIZER_JSON
    tokenizer_class = "PreTrainedTokenizerFast"

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        # The model's own vocabulary never changes; only added tokens do.
        model_vocab = tokenizer.get_vocab(with_added_tokens=False)
        self._model_size = max(model_vocab.values(), default=-1) + 1
        self._refresh()

    @classmethod
    def from_file(cls, path: Path) -> HFBackend:
        from tokenizers import Tokenizer as HFTokenizer

        try:
            tok = HFTokenizer.from_file(str(path))
        except Exception as e:
            raise PuyuError(f"{path}: not a valid tokenizer.json ({one_line(e)})") from None
        return cls(tok)

    def _refresh(self) -> None:
        self._plain: Any = None  # built on first use by `encode_plain`
        self.added = {
            i: AddedToken(
                content=t.content,
                id=i,
                special=t.special,
                lstrip=t.lstrip,
                rstrip=t.rstrip,
                single_word=t.single_word,
                normalized=t.normalized,
            )
            for i, t in self._tok.get_added_tokens_decoder().items()
        }
        self.vocab_size = max([self._model_size, *(i + 1 for i in self.added)])

    def add_tokens(self, tokens: Iterable[AddedToken]) -> None:
        # Tokens tokenizer.json lacks get the next free ids, so they go in in the config's id order.
        for token in sorted(tokens, key=lambda t: t.id):
            self._add(token)

    def add_special(self, content: str) -> None:
        self._add(AddedToken(content=content, id=-1, special=True))

    def default_token(self, which: str) -> str | None:
        return None  # tokenizer.json names no special tokens; the post-processor hints at BOS/EOS

    def _add(self, token: AddedToken) -> None:
        from tokenizers import AddedToken as HFAddedToken

        existing = self._tok.token_to_id(token.content)
        if existing is not None and existing in self.added:
            return
        hf_token = HFAddedToken(
            token.content,
            single_word=token.single_word,
            lstrip=token.lstrip,
            rstrip=token.rstrip,
            normalized=token.normalized,
            special=token.special,
        )
        if token.special:
            self._tok.add_special_tokens([hf_token])
        else:
            self._tok.add_tokens([hf_token])
        self._refresh()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_plain(self, text: str) -> list[int]:
        """Ids of `text` read as plain text: added tokens written in it are not matched."""
        plain = self._plain
        if plain is None:
            from tokenizers import Tokenizer as HFTokenizer

            # A copy, so that the flag never changes how other threads' `encode` calls read text.
            plain = HFTokenizer.from_str(self._tok.to_str())
            plain.encode_special_tokens = True
            self._plain = plain
        # `encode_special_tokens` covers special added tokens; others are cut after their first
        # character, so that neither half matches.
        others = [t.content for t in self.added.values() if not t.special and t.content and t.content in text]
        if not others:
            return plain.encode(text, add_special_tokens=False).ids
        pattern = re.compile("|".join(re.escape(c) for c in sorted(others, key=len, reverse=True)))
        pieces: list[str] = []
        cursor = 0
        for match in pattern.finditer(text):
            pieces.extend((text[cursor : match.start()], match.group()[:1], match.group()[1:]))
            cursor = match.end()
        pieces.append(text[cursor:])
        return [i for piece in pieces if piece for i in plain.encode(piece, add_special_tokens=False).ids]

    def encode_with_offsets(self, text: str) -> tuple[list[int], Offsets]:
        enc = self._tok.encode(text, add_special_tokens=False)
        return enc.ids, [(int(s), int(e)) for s, e in enc.offsets]

    def decode(self, ids: list[int], skip_ids: AbstractSet[int] | None) -> str:
        size = self.vocab_size
        if skip_ids is None:
            keep = [i for i in ids if 0 <= i < size]
        else:
            keep = [i for i in ids if 0 <= i < size and i not in skip_ids]
        return self._tok.decode(keep, skip_special_tokens=skip_ids is not None)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        if not 0 <= token_id < self.vocab_size:
            return None
        return self._tok.id_to_token(token_id)

    def post_processor_extras(self) -> tuple[list[int], list[int]]:
        """The ids the tokenizer.json post-processor puts before and after a single sequence."""
        plain = self._tok.encode("a", add_special_tokens=False).ids
        full = self._tok.encode("a", add_special_tokens=True).ids
        for k in range(len(full) - len(plain) + 1):
            if full[k : k + len(plain)] == plain:
                return full[:k], full[k + len(plain) :]
        return [], []

    def serialize(self, add_bos: bool, bos_id: int | None, add_eos: bool, eos_id: int | None) -> bytes:
        """tokenizer.json whose post-processor adds BOS/EOS exactly as this tokenizer does.

        transformers follows the post-processor unless the config sets add_bos_token/add_eos_token, so
        the two are kept in agreement; a post-processor that already agrees is kept as it is.
        """
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import processors

        bos = self._tok.id_to_token(bos_id) if add_bos and bos_id is not None else None
        eos = self._tok.id_to_token(eos_id) if add_eos and eos_id is not None else None
        want = ([bos_id] if bos else [], [eos_id] if eos else [])
        if self.post_processor_extras() == want:
            return self._tok.to_str(pretty=True).encode("utf-8")
        tok = HFTokenizer.from_str(self._tok.to_str())
        # The same template transformers builds from add_bos_token / add_eos_token.
        single = " ".join([*([f"{bos}:0"] if bos else []), "$A:0", *([f"{eos}:0"] if eos else [])])
        second = " ".join([*([f"{bos}:1"] if bos else []), "$B:1", *([f"{eos}:1"] if eos else [])])
        specials = [(t, i) for t, i in ((bos, bos_id), (eos, eos_id)) if t is not None]
        tok.post_processor = processors.TemplateProcessing(
            single=single, pair=f"{single} {second}", special_tokens=specials
        )
        return tok.to_str(pretty=True).encode("utf-8")
