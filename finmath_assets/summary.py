"""Print what `make run` produced: row counts of the warehouse tables and file locations.

Opens the warehouse read-only, so it can run beside the Dagster UI.
"""

from __future__ import annotations

import sys

import duckdb

from finmath_assets.settings import Settings

TABLES = (
    "raw_records",
    "validated_records",
    "rejected_records",
    "question_tables",
    "question_embeddings",
    "features",
)


def main() -> int:
    settings = Settings()
    if not settings.warehouse_path.exists():
        print(f"no warehouse at {settings.warehouse_path}: run `make run` first", file=sys.stderr)
        return 1
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        print(f"warehouse: {settings.warehouse_path}")
        for table in TABLES:
            try:
                count = conn.execute(f"SELECT count(*) FROM finmath.{table}").fetchone()[0]
            except duckdb.CatalogException:
                print(f"  finmath.{table:<22} missing")
                continue
            print(f"  finmath.{table:<22} {count:>7,} rows")
        labelled = conn.execute(
            "SELECT count(*) FROM finmath.validated_records WHERE ground_truth IS NOT NULL"
        ).fetchone()[0]
        dim = conn.execute(
            "SELECT max(len(embedding)) FROM finmath.question_embeddings"
        ).fetchone()[0]
    print(f"  labelled records: {labelled:,}; embedding dimension: {dim}")
    parquet = settings.processed_dir / "finance_math_features.parquet"
    print(f"features parquet: {parquet}{'' if parquet.exists() else ' (missing)'}")
    print(f"dagster home: {settings.dagster_home}  (UI: make dev)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
