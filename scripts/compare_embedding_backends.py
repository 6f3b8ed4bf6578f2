"""Does a faster embedding backend cost accuracy? ``python scripts/compare_embedding_backends.py``

Materialises the data spine once per backend (fresh homes, the `make run` command), then runs the
answer model's 5-fold cross-validation on the 200 labelled rows of each with several fold seeds,
and prints, against the first backend (the fp32 reference): the cosine of every one of the 1,200
vectors to the reference's, the mean signed-log MAE and its paired difference per seed.

The gate a backend must pass to be the default: min cosine >= 0.99 and a mean MAE difference
within 0.01. `onnx` (fp32) reproduces torch; `openvino` (bf16 here) passes; `onnx-int8` does not.
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

MIN_COSINE, MAX_MAE_DIFFERENCE = 0.99, 0.01


def _embeddings(warehouse: Path) -> dict[str, np.ndarray]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        rows = conn.execute("SELECT question_id, embedding FROM finmath.question_embeddings")
        return {qid: np.asarray(vector, dtype=np.float64) for qid, vector in rows.fetchall()}


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
    parser.add_argument("--backends", default="onnx,openvino,onnx-int8")
    parser.add_argument("--seeds", type=int, default=8, help="fold seeds 0..N-1")
    args = parser.parse_args()
    backends = args.backends.split(",")
    maes: dict[str, np.ndarray] = {}
    vectors: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="finmath-backends-") as tmp:
        for backend in backends:
            home = Path(tmp) / backend
            print(f"materialising the data spine with the {backend} backend ...", flush=True)
            seconds = _materialize(home, DATA_SPINE, FINMATH_EMBEDDING_BACKEND=backend)
            maes[backend] = _signed_log_maes(home / "warehouse.duckdb", args.seeds)
            vectors[backend] = _embeddings(home / "warehouse.duckdb")
            print(f"  {seconds:.1f} s; signed-log MAE per seed {np.round(maes[backend], 3)}")
    reference = backends[0]
    print()
    print(
        "| backend | cosine to reference, min / mean | mean signed-log MAE | paired difference "
        "| worse in | gate |"
    )
    print("|---|---|---|---|---|---|")
    for backend in backends:
        ids = sorted(vectors[reference])
        cosine = np.array([vectors[backend][i] @ vectors[reference][i] for i in ids])
        diff = maes[backend] - maes[reference]
        passes = cosine.min() >= MIN_COSINE and abs(diff.mean()) <= MAX_MAE_DIFFERENCE
        print(
            f"| {backend} | {cosine.min():.5f} / {cosine.mean():.5f} | "
            f"{maes[backend].mean():.4f} | {diff.mean():+.4f} | "
            f"{int((diff > 0).sum())} of {len(diff)} seeds | {'passes' if passes else 'fails'} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
