"""The sandbox's cost per program under each isolation (`make bench-sandbox`).

Runs the 200 labelled gold programs of the embedded snapshot as the ground-truth check does
(two workers) in a process that has loaded torch and onnxruntime, like the pipeline: once under
bubblewrap (when it works here) and once under the seccomp fallback. Prints seconds in all,
milliseconds per program and how many reproduced a number.
"""

from __future__ import annotations

import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import onnxruntime  # noqa: F401  (the real process has both loaded)
import torch  # noqa: F401

from finmath_assets.core import sandbox
from finmath_assets.core.sandbox import Limits, SandboxUnavailableError, run_solution
from finmath_assets.core.sources import EMBEDDED_DATA_DIR


def main() -> None:
    records = json.loads((EMBEDDED_DATA_DIR / "validation.json").read_text())
    programs = [r["python_solution"] for r in records]
    for isolation in ("bubblewrap", "seccomp"):
        try:
            limits = Limits(isolation=sandbox.resolve(isolation))
        except SandboxUnavailableError as error:
            print(f"{isolation:<10} skipped: {error}")
            continue
        run_solution("def solution():\n    return 1\n", limits)  # warm: the filter is compiled
        started = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(run_solution, programs, [limits] * len(programs)))
        seconds = time.perf_counter() - started
        per_program = statistics.median(r.seconds for r in results) * 1000
        ok = sum(r.status == "ok" for r in results)
        print(
            f"{isolation:<10} {len(programs)} programs in {seconds:5.2f} s on 2 workers; "
            f"median {per_program:5.1f} ms per program; {ok} returned a number"
        )


if __name__ == "__main__":
    main()
