"""Sandbox cold start and per-call overhead: puyu's Sandbox against a plain subprocess per call and against
Lagent 0.2.4's `PythonInterpreter` (in-process `exec` under func_timeout), in one run.

Lagent is measured when it is importable (it is not part of puyu's environments: run this script with an
interpreter that has `pip install lagent==0.2.4` and puyu's src/ on PYTHONPATH; the sandbox itself needs only the
standard library):

    PYTHONPATH=src /path/to/lagent-env/bin/python benchmarks/agent_sandbox.py --calls 50
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

from puyu.agent.sandbox import Sandbox

CELL = "total = sum(range(100))\ntotal"


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50, help="warm calls per contender")
    parser.add_argument("--starts", type=int, default=5, help="cold starts per contender")
    args = parser.parse_args()

    rows: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as workspace:

        def cold_sandbox() -> None:
            with Sandbox(workspace, timeout=30) as box:
                assert box.run(CELL).result == "4950"

        box = Sandbox(workspace, timeout=30)
        print(f"sandbox isolation: {box.isolation} ({box.description})")
        box.run("1")
        warm = timed(lambda: box.run(CELL), args.calls)
        box.close()
        rows["puyu Sandbox"] = (statistics.median(timed(cold_sandbox, args.starts)), statistics.median(warm))

    def plain() -> None:
        subprocess.run([sys.executable, "-I", "-c", CELL.replace("total\n", "").replace("\ntotal", "\nprint(total)")],
                       check=True, capture_output=True)  # fmt: skip

    plain_times = timed(plain, args.calls)
    rows["plain subprocess"] = (statistics.median(plain_times[: args.starts]), statistics.median(plain_times))

    try:
        from lagent.actions import PythonInterpreter
    except ImportError:
        print("lagent not importable: its row is skipped")
    else:
        code = "def solution():\n    total = sum(range(100))\n    return total"

        def cold_lagent() -> None:
            assert PythonInterpreter().run(code).result[0]["content"] == "4950"

        interpreter = PythonInterpreter()
        warm = timed(lambda: interpreter.run(code), args.calls)
        rows["Lagent PythonInterpreter"] = (statistics.median(timed(cold_lagent, args.starts)), statistics.median(warm))

    base_call = rows["puyu Sandbox"][1]
    print("\n| contender | cold start ms | per call ms | puyu / it (call) |\n|---|---|---|---|")
    for name, (cold, call) in rows.items():
        print(f"| {name} | {cold * 1000:.1f} | {call * 1000:.2f} | {base_call / call:.3g}x |")


if __name__ == "__main__":
    main()
