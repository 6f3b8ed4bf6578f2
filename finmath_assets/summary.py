"""Print what `make run` produced: row counts of the warehouse tables and file locations.

Opens the warehouse read-only, so it can run beside the Dagster UI.
"""

from __future__ import annotations

import json
import sys

import duckdb

from finmath_assets.defs.constants import DATA_SPINE_ASSETS, MODEL_ASSETS, MONITORING_ASSETS
from finmath_assets.settings import Settings

TABLES = (
    *DATA_SPINE_ASSETS,
    *MODEL_ASSETS,
    "model_evaluations",
    *MONITORING_ASSETS,
    "drift_history",
)


def _print_model(settings: Settings) -> None:
    report_path = settings.processed_dir / "evaluation_report.json"
    if not report_path.exists():
        print("evaluation report: missing (the model assets have not run)")
        return
    report = json.loads(report_path.read_text())
    overall = report["overall"]
    decision = "promoted to champion" if report["promoted_to_champion"] else "not promoted"
    print(
        f"model: {report['model_name']} v{report['model_version']} ({decision}: "
        f"{report['promotion_reason']})"
    )
    print(f"  {report['cv_folds']}-fold CV on {report['n_labelled']} labelled questions:")
    print(f"  {'predictor':<16} {'signed-log MAE':>14} {'MAE':>12} {'median AE':>10}")
    for predictor in ("model", "median_baseline", "mean_baseline"):
        m = overall[predictor]
        print(
            f"  {predictor:<16} {m['signed_log_mae']:>14.3f} {m['mae']:>12,.1f} "
            f"{m['median_ae']:>10,.2f}"
        )
    print(f"evaluation report: {report_path}")
    print(
        f"mlflow: {settings.mlflow_tracking_uri_value}  "
        f"(UI: .venv/bin/mlflow ui --backend-store-uri {settings.mlflow_tracking_uri_value})"
    )


def _print_monitoring(settings: Settings) -> None:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        try:
            latest = conn.execute(
                "SELECT current_source, current_rows, drift_share, drifted_columns, report "
                "FROM finmath.drift_history ORDER BY created_at DESC LIMIT 1"
            ).fetchone()
        except duckdb.CatalogException:
            latest = None
    if latest is None:
        print("drift report: missing (the monitoring assets have not run)")
        return
    source, rows, share, drifted, report = latest
    print(f"drift report: {share:.0%} of columns drifted ({rows:,} rows of {source}): {report}")
    if drifted:
        print(f"  drifted: {', '.join(drifted)}")
    regression = settings.processed_dir / "reports" / "regression_quality_report.html"
    print(f"regression quality report: {regression}{'' if regression.exists() else ' (missing)'}")


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
                print(f"  finmath.{table:<26} missing")
                continue
            print(f"  finmath.{table:<26} {count:>7,} rows")
        labelled = conn.execute(
            "SELECT count(*) FROM finmath.validated_records WHERE ground_truth IS NOT NULL"
        ).fetchone()[0]
        dim = conn.execute(
            "SELECT max(len(embedding)) FROM finmath.question_embeddings"
        ).fetchone()[0]
    print(f"  labelled records: {labelled:,}; embedding dimension: {dim}")
    parquet = settings.processed_dir / "finance_math_features.parquet"
    print(f"features parquet: {parquet}{'' if parquet.exists() else ' (missing)'}")
    _print_model(settings)
    _print_monitoring(settings)
    print(f"dagster home: {settings.dagster_home}  (UI: make dev)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
