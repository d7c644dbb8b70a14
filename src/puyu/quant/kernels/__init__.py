"""The C++ weight-only matmul kernels, compiled on first use.

`load_kernels()` builds `weight_only.cpp` with `torch.utils.cpp_extension.load` (g++ and ninja; -O3
-march=native -fopenmp) into the torch extensions folder, keyed by a hash of the source, the flags and the
CPU, so a rebuild happens only when one of them changes. Where it cannot build (no compiler, or PUYU_QUANT_KERNELS=0),
it logs one warning and returns None; callers then use the plain-torch dequantize path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
from pathlib import Path
from types import ModuleType

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("weight_only.cpp")
# -fopenmp: ATen's parallel_for is an inline `#pragma omp parallel`, so without it the kernels run on one
# thread. The extension then links libgomp.so.1, which resolves to the copy torch has already loaded.
CFLAGS = ["-O3", "-march=native", "-std=c++17", "-fopenmp"]
LDFLAGS = ["-fopenmp"]
DISABLE_ENV = "PUYU_QUANT_KERNELS"

_state: dict[str, ModuleType | None] = {}


def _cpu_signature() -> str:
    """The CPU's model name and flags: a build for one CPU must not be reused on another (-march=native)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        lines = [line for line in text.splitlines() if line.startswith(("model name", "flags"))][:2]
        return "\n".join(lines)
    except OSError:
        return platform.processor()


def extension_name() -> str:
    digest = hashlib.sha256()
    digest.update(SOURCE.read_bytes())
    digest.update(" ".join(CFLAGS + LDFLAGS).encode())
    digest.update(_cpu_signature().encode())
    return f"puyu_weight_only_{digest.hexdigest()[:12]}"


def load_kernels() -> ModuleType | None:
    """The compiled kernel module, or None (with one logged warning) where it cannot be built."""
    if "module" in _state:
        return _state["module"]
    module: ModuleType | None = None
    if os.environ.get(DISABLE_ENV, "1") == "0":
        logger.info("quantized matmul kernels disabled by %s=0; using the plain-torch path", DISABLE_ENV)
    else:
        try:
            from torch.utils.cpp_extension import load

            module = load(
                name=extension_name(), sources=[str(SOURCE)], extra_cflags=CFLAGS, extra_ldflags=LDFLAGS, verbose=False
            )
        except Exception as exc:  # a missing compiler or ninja surfaces as many exception types
            logger.warning(
                "could not build the quantized matmul kernels (%s); using the slower plain-torch path",
                " ".join(str(exc).split())[:300],
            )
    _state["module"] = module
    return module


def kernels_available() -> bool:
    return load_kernels() is not None
