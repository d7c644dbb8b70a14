"""The machine a benchmark ran on, recorded beside its results (no heavy imports: parents of timed
subprocesses must not load torch)."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any


def cpu_model() -> str:
    """lscpu's model name, else what `platform` knows."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def machine_info(packages: Sequence[str], **extra: Any) -> dict[str, Any]:
    """CPU, core count, Python and the given packages' versions, today's date, plus `extra` fields."""
    info: dict[str, Any] = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "python": platform.python_version()}
    for name in packages:
        try:
            info[name] = version(name)
        except PackageNotFoundError:
            info[name] = None
    info.update(extra)
    info["date"] = datetime.date.today().isoformat()
    return info
