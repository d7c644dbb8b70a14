"""GPT-2's byte-level alphabet: every byte as one printable character, as byte-level BPE vocabularies spell tokens."""

from __future__ import annotations

import functools
import re

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (the ByteLevel alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + n)
            n += 1
    return mapping


@functools.cache
def _unicode_to_bytes() -> dict[str, int]:
    return {char: byte for byte, char in bytes_to_unicode().items()}


def piece_bytes(piece: str) -> bytes | None:
    """The bytes a raw vocabulary piece stands for when it is not whole UTF-8 text: a SentencePiece byte
    piece (`<0xE4>`) or a byte-level BPE token; None for anything else."""
    match = _BYTE_PIECE.fullmatch(piece)
    if match is not None:
        return bytes([int(match.group(1), 16)])
    inverse = _unicode_to_bytes()
    if piece and all(char in inverse for char in piece):
        return bytes(inverse[char] for char in piece)
    return None
