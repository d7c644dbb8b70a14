"""The interpreter kernel that runs inside the sandbox: one JSON request per line in, one JSON reply per line out.

This file is executed as a standalone script (`python -I -c <source>`), so it imports nothing from puyu: inside
the sandbox the repository is not visible. Variables persist in one namespace between requests, like a notebook.
The reply channel is a private duplicate of the original stdout; fd 1 and 2 are pointed at /dev/null so that user
code writing to them directly cannot corrupt the protocol.
"""

import ast
import contextlib
import io
import json
import os
import sys
import traceback

MAX_REPR = 4000
MAX_CAPTURE = 65536


class _BoundedText(io.StringIO):
    """Captured output that keeps its first MAX_CAPTURE characters, so a print loop cannot exhaust memory."""

    def write(self, text: str) -> int:
        room = MAX_CAPTURE - self.tell()
        if room > 0:
            super().write(text[:room])
        return len(text)


def _save_figures(counter: list[int]) -> list[str]:
    """Save open matplotlib figures as PNG files in the working directory (the workspace) and close them."""
    if "matplotlib.pyplot" not in sys.modules:
        return []
    plt = sys.modules["matplotlib.pyplot"]
    saved = []
    for number in plt.get_fignums():
        counter[0] += 1
        name = f"figure-{counter[0]}.png"
        plt.figure(number).savefig(name, format="png")
        saved.append(name)
    plt.close("all")
    return saved


def _run(code: str, namespace: dict) -> tuple[str | None, str | None]:
    """Execute `code`; when its last statement is an expression, return that value's repr (as a notebook does)."""
    tree = ast.parse(code, "<cell>", "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<cell>", "exec"), namespace)
    if last is None:
        return None, None
    value = eval(compile(last, "<cell>", "eval"), namespace)
    if value is None:
        return None, None
    text = repr(value)
    return (text[:MAX_REPR] + "…") if len(text) > MAX_REPR else text, None


def main() -> None:
    reply_channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    namespace: dict = {"__name__": "__main__"}
    figure_counter = [0]
    reply_channel.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    reply_channel.flush()
    for line in sys.stdin:
        request = json.loads(line)
        captured = _BoundedText()
        result = error = None
        try:
            with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
                result, error = _run(request["code"], namespace)
        except BaseException as exc:
            # Keep only the user's frames: the kernel's own are noise to the model reading the error.
            frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == "<cell>"]
            text = "".join(traceback.format_list(frames)) + "".join(traceback.format_exception_only(type(exc), exc))
            error = text.strip()
        try:
            figures = _save_figures(figure_counter)
        except Exception as exc:
            figures = []
            error = (error or "") + f"\nsaving figures failed: {exc}"
        reply = {"stdout": captured.getvalue(), "result": result, "error": error, "figures": figures}
        reply_channel.write(json.dumps(reply) + "\n")
        reply_channel.flush()


if __name__ == "__main__":
    main()
