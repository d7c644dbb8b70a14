"""Running `puyu` as a newcomer does: a subprocess, its exit status, stdout and stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_puyu(*args: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "puyu", *args], input=stdin, capture_output=True, text=True, timeout=timeout
    )


def checked(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    result = run_puyu(*args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result


def chat_rows_file(path: Path, count: int = 8) -> Path:
    turns = [(f"What is {a} plus 1?", f"{a + 1}") for a in range(count)]
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in turns]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
