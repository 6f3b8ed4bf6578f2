"""Print what `make run` produced: row counts of the warehouse tables and file locations.

Opens the warehouse read-only, so it can run beside the Dagster UI.
"""

from __future__ import annotations

import json
import sys

import duckdb

from finmath_assets.defs.constants import (
    DATA_SPINE_ASSETS,
    LLM_ASSETS,
    MODEL_ASSETS,
    MONITORING_ASSETS,
)
from finmath_assets.settings import Settings

TABLES = (
    *DATA_SPINE_ASSETS,
    *MODEL_ASSETS,
    "model_evaluations",
    *MONITORING_ASSETS,
    "drift_history",
    *LLM_ASSETS,
)


def _reused(settings: Settings, version: str) -> bool:
    """Whether the latest ``answer_model`` materialisation reused ``version`` instead of training
    it. False for a warehouse written before reuse existed (no ``reused`` column), or when the
    table holds another version than the report (the report is older)."""
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        try:
            frame = conn.execute("SELECT * FROM finmath.answer_model").fetchdf()
        except duckdb.CatalogException:
            return False
    if frame.empty or "reused" not in frame.columns:
        return False
    row = frame.iloc[0]
    return str(row["version"]) == version and bool(row["reused"])


def _print_model(settings: Settings) -> None:
    report_path = settings.processed_dir / "evaluation_report.json"
    if not report_path.exists():
        print("evaluation report: missing (the model assets have not run)")
        return
    report = json.loads(report_path.read_text())
    overall = report["overall"]
    version = str(report["model_version"])
    if _reused(settings, version):
        print(
            f"model: {report['model_name']} v{version} reused (nothing changed: same training "
            "data, features and parameters; no new run or version)"
        )
    else:
        decision = "promoted to champion" if report["promoted_to_champion"] else "not promoted"
        print(
            f"model: {report['model_name']} v{version} ({decision}: {report['promotion_reason']})"
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


MARKET_TABLES = (
    "market_prices",
    "rejected_market_prices",
    "price_features",
    "card_transactions",
    "rejected_card_transactions",
    "forecast_backtest_report",
)


def _print_counts(conn: duckdb.DuckDBPyConnection, schema: str, tables: tuple[str, ...]) -> None:
    for table in tables:
        name = f"{schema}.{table}"
        try:
            count = conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
        except duckdb.CatalogException:
            print(f"  {name:<34} missing")
            continue
        print(f"  {name:<34} {count:>7,} rows")


def _print_market(settings: Settings) -> None:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        _print_counts(conn, "market", MARKET_TABLES)
        try:
            forecasters = conn.execute(
                "SELECT target, model_name, version, promoted, backtest_mase, best_baseline, "
                "backtest_mase_best_baseline FROM market.price_forecaster ORDER BY target DESC"
            ).fetchall()
        except duckdb.CatalogException:
            forecasters = []
    for target, name, version, promoted, mase, baseline, baseline_mase in forecasters:
        decision = "champion" if promoted else "not promoted"
        print(
            f"forecaster {target}: {name} v{version} ({decision}): backtest MASE {mase:.3f} vs "
            f"{baseline} {baseline_mase:.3f}"
        )
    plot = settings.processed_dir / "reports" / "forecast_backtest.png"
    print(f"forecast backtest plot: {plot}{'' if plot.exists() else ' (missing)'}")


def _print_sandbox() -> None:
    """Which isolation the ground-truth check's sandbox used (bubblewrap, or the fallback)."""
    import dagster as dg

    key = dg.AssetCheckKey(
        dg.AssetKey(["finmath", "validated_records"]), "ground_truth_reproducible"
    )
    with dg.DagsterInstance.get() as instance:
        records = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
    event = records[0].event if records else None
    evaluation = event.dagster_event.event_specific_data if event and event.dagster_event else None
    metadata = getattr(evaluation, "metadata", None) or {}
    if "isolation" not in metadata:
        print("sandbox: the ground-truth check has not run")
        return
    verdict = "passed" if evaluation.passed else "FAILED"
    print(f"sandbox: {metadata['isolation'].value} (ground_truth_reproducible {verdict})")


def main() -> int:
    settings = Settings()
    if not settings.warehouse_path.exists():
        print(f"no warehouse at {settings.warehouse_path}: run `make run` first", file=sys.stderr)
        return 1
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        print(f"warehouse: {settings.warehouse_path}")
        _print_counts(conn, "finmath", TABLES)
        labelled = conn.execute(
            "SELECT count(*) FROM finmath.validated_records WHERE ground_truth IS NOT NULL"
        ).fetchone()[0]
        dim = conn.execute(
            "SELECT max(len(embedding)) FROM finmath.question_embeddings"
        ).fetchone()[0]
    print(f"  labelled records: {labelled:,}; embedding dimension: {dim}")
    parquet = settings.processed_dir / "finance_math_features.parquet"
    print(f"features parquet: {parquet}{'' if parquet.exists() else ' (missing)'}")
    _print_sandbox()
    _print_model(settings)
    _print_monitoring(settings)
    _print_market(settings)
    print(f"dagster home: {settings.dagster_home}  (UI: make dev)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
