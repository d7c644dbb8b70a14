"""The one exception type for user mistakes.

A `PuyuError` carries a one-line message that names the file (or input) and the problem.
The CLI prints it without a traceback; anything else is a bug and keeps its traceback.
"""


class PuyuError(Exception):
    """A user-facing error: bad input, a malformed file, an unsupported checkpoint."""


def one_line(exc: BaseException) -> str:
    """An exception's message folded onto one line (its type name when it has none), for wrapping
    library errors (safetensors, Jinja, sentencepiece) into a `PuyuError`."""
    return " ".join(str(exc).split()) or type(exc).__name__
