"""Byte streams of input files (plain, gzip, zstd) and UTF-8 decoding that reports bad bytes instead of failing.

Compressed files are decompressed while reading, so a large `.jsonl.zst` never sits in memory whole. A
truncated gzip or zstd stream raises `EOFError` at the point where the data stops; the caller keeps what
came before and counts the rest as a problem.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import zstandard

from ..document import Tally

CHUNK_BYTES = 1 << 16


class _ZstdRawReader(io.RawIOBase):
    """zstd frames decompressed as a raw stream.

    `zstandard`'s own stream reader returns no error on a truncated frame, so frames are decoded with a
    decompression object here and a stream that stops inside a frame raises `EOFError`.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._context = zstandard.ZstdDecompressor()
        self._frame = self._context.decompressobj()
        self._in_frame = False
        self._pending = bytearray()
        self._at_end = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending and not self._at_end:
            chunk = self._raw.read(CHUNK_BYTES)
            if not chunk:
                self._at_end = True
                if self._in_frame:
                    raise EOFError("zstd stream ended inside a frame (truncated file)")
                break
            self._feed(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        del self._pending[:n]  # deleting from the front of a bytearray is O(1) in CPython
        return n

    def _feed(self, data: bytes) -> None:
        while data:
            self._in_frame = True
            self._pending += self._frame.decompress(data)
            if not self._frame.eof:
                return
            # A file may hold several frames (concatenated or written in parts); start a new one.
            data = self._frame.unused_data
            self._frame = self._context.decompressobj()
            self._in_frame = False

    def close(self) -> None:
        self._raw.close()
        super().close()


def compression_of(path: Path) -> str | None:
    """ "gzip", "zstd" or None, from the file name."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return "gzip"
    if name.endswith(".zst"):
        return "zstd"
    return None


def open_binary(path: Path) -> BinaryIO:
    """The file's decompressed bytes as a buffered stream (with `readline`)."""
    kind = compression_of(path)
    if kind == "gzip":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if kind == "zstd":
        return io.BufferedReader(_ZstdRawReader(open(path, "rb")), CHUNK_BYTES)  # type: ignore[return-value]
    return open(path, "rb")


def decode_utf8(
    data: bytes, tally: Tally, source: str, line: int | None, first_line: int = 1, first_offset: int = 0
) -> str:
    """UTF-8 text of `data`; undecodable bytes become U+FFFD and are counted as one problem.

    Args:
        data: the bytes.
        tally: where the problem goes.
        source: the file, for the problem.
        line: the line the bytes start on, or None when `data` is a whole file (the problem then names the
            line of the first bad byte, counted from `first_line`).
        first_line: the line number of the first byte when `line` is None.
        first_offset: the file offset of the first byte when `line` is None (the problem names the offset of
            the bad byte in the line when `line` is given, in the file otherwise).
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = line if line is not None else first_line + data.count(b"\n", 0, exc.start)
        offset = exc.start if line is not None else first_offset + exc.start
        tally.problem(source, where, f"invalid utf-8: byte {data[exc.start]:#04x} at offset {offset}")
        return data.decode("utf-8", errors="replace")


def iter_lines(stream: BinaryIO, tally: Tally, source: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line with its line ending) for each line of a binary stream.

    One line is in memory at a time, however long it is.
    """
    for number, raw in enumerate(stream, start=1):
        text = decode_utf8(raw, tally, source, number)
        if number == 1:
            text = text.removeprefix("\ufeff")
        yield number, text


def utf8_complete_prefix(data: bytes | bytearray) -> int:
    """Length of the longest prefix of `data` that does not end inside a UTF-8 sequence.

    Chunks read from a file can cut a multi-byte character in two; the cut tail waits for the next chunk.
    """
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:  # ASCII: the sequence is complete
            return len(data)
        if byte >= 0xC0:  # lead byte of a sequence of `need` bytes
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) - back if need > back else len(data)
    return len(data)


def iter_text_chunks(stream: BinaryIO, tally: Tally, source: str) -> Iterator[str]:
    """Decoded text of a binary stream in chunks of about `CHUNK_BYTES`, never splitting a character.

    Undecodable bytes become U+FFFD; each chunk holding some is counted as a problem with the line of the
    first bad byte.
    """
    carry = b""
    lines_before = offset = 0
    first = True
    while True:
        chunk = stream.read(CHUNK_BYTES)
        data = carry + chunk
        if not chunk:
            if data:
                yield decode_utf8(data, tally, source, None, lines_before + 1, offset)
            return
        cut = utf8_complete_prefix(data)
        data, carry = data[:cut], data[cut:]
        text = decode_utf8(data, tally, source, None, lines_before + 1, offset)
        if first:
            text = text.removeprefix("\ufeff")
            first = False
        lines_before += data.count(b"\n")
        offset += len(data)
        yield text
