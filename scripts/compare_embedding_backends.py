"""Does a faster embedding backend cost accuracy? ``python scripts/compare_embedding_backends.py``

Materialises the data spine once per backend (fresh homes, the `make run` command), then runs the
answer model's 5-fold cross-validation on the 200 labelled rows of each with several fold seeds,
and prints the signed-log MAE per seed and the paired difference against the first backend.
This is the check behind the default: `onnx` (fp32) reproduces torch exactly; `onnx-int8` is
about 2.2x faster but is only acceptable if it shows no loss here.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import duckdb
import numpy as np

from finmath_assets.bench import DATA_SPINE, _materialize
from finmath_assets.core.features import ID_COLUMNS
from finmath_assets.core.modeling import cross_validate, select_features, signed_log


def _signed_log_maes(warehouse: Path, seeds: int) -> np.ndarray:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        features = conn.execute(
            "SELECT * FROM finmath.features WHERE ground_truth IS NOT NULL ORDER BY question_id"
        ).fetchdf()
    columns = select_features([c for c in features.columns if c not in ID_COLUMNS], "all")
    target = features["ground_truth"].to_numpy()
    return np.array(
        [
            np.mean(
                np.abs(
                    signed_log(cross_validate(features[columns], target, seed=s).model)
                    - signed_log(target)
                )
            )
            for s in range(seeds)
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="onnx,onnx-int8")
    parser.add_argument("--seeds", type=int, default=8, help="fold seeds 0..N-1")
    args = parser.parse_args()
    backends = args.backends.split(",")
    maes: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="finmath-backends-") as tmp:
        for backend in backends:
            home = Path(tmp) / backend
            print(f"materialising the data spine with the {backend} backend ...", flush=True)
            seconds = _materialize(home, DATA_SPINE, FINMATH_EMBEDDING_BACKEND=backend)
            maes[backend] = _signed_log_maes(home / "warehouse.duckdb", args.seeds)
            print(f"  {seconds:.1f} s; signed-log MAE per seed {np.round(maes[backend], 3)}")
    reference = backends[0]
    print()
    print("| backend | mean signed-log MAE | paired difference | worse in |")
    print("|---|---|---|---|")
    for backend in backends:
        diff = maes[backend] - maes[reference]
        print(
            f"| {backend} | {maes[backend].mean():.4f} | {diff.mean():+.4f} | "
            f"{int((diff > 0).sum())} of {len(diff)} seeds |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
