"""Monitoring: inference_log (the service's prediction files) -> drift_report; cv_predictions ->
regression_quality_report. Reports are Evidently HTML under FINMATH_HOME/processed/reports/."""

import json
from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from finmath_assets.core import monitoring
from finmath_assets.core.checksums import content_digest
from finmath_assets.core.features import ID_COLUMNS
from finmath_assets.defs.constants import DUCKDB_POOL, KEY_PREFIX, WAREHOUSE_IO_MANAGER
from finmath_assets.defs.resources import (
    MonitoringResource,
    ProcessedFilesResource,
    WarehouseResource,
)

GROUP = "monitoring"
DRIFT_HISTORY = f"{KEY_PREFIX}.drift_history"


@dg.asset(
    key_prefix=KEY_PREFIX,
    group_name=GROUP,
    io_manager_key=WAREHOUSE_IO_MANAGER,
    pool=DUCKDB_POOL,
    kinds={"duckdb"},
    description="Every prediction the inference service logged (FINMATH_HOME/inference_log/"
    "predictions-*.jsonl): timestamp, request id, model version, prediction and the feature "
    "values as JSON. Lines that are not complete records are counted and listed in metadata.",
)
def inference_log(
    context: dg.AssetExecutionContext, monitor: MonitoringResource
) -> dg.Output[pd.DataFrame]:
    log = monitoring.read_inference_log(monitor.inference_log_path)
    for line in log.bad_lines:
        context.log.warning(f"inference log line skipped: {line}")
    # a source read from files: its data version is what it read, so the drift report downstream
    # reruns when predictions were added, not when the same log is read again
    version = content_digest(log.frame.to_csv(index=False).splitlines())
    return dg.Output(
        log.frame,
        data_version=dg.DataVersion(version),
        metadata={
            "rows": len(log.frame),
            "files": log.files,
            "bad_lines": len(log.bad_lines),
            "bad_line_examples": log.bad_lines[:20],
            "model_versions": sorted(log.frame["model_version"].astype(str).unique().tolist()),
            "content_sha256": version,
        },
    )


def _append_history(warehouse: WarehouseResource, row: dict) -> None:
    with warehouse.get_connection() as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {DRIFT_HISTORY} (created_at TIMESTAMP, current_source "
            "VARCHAR, reference_rows BIGINT, current_rows BIGINT, drift_share DOUBLE, "
            "drifted_columns VARCHAR[], embedding_drift_share DOUBLE, report VARCHAR)"
        )
        conn.execute(
            f"INSERT INTO {DRIFT_HISTORY} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", list(row.values())
        )


@dg.asset(
    key_prefix=KEY_PREFIX,
    group_name=GROUP,
    io_manager_key=WAREHOUSE_IO_MANAGER,
    pool=DUCKDB_POOL,
    kinds={"duckdb", "evidently"},
    ins={
        "features": dg.AssetIn(key=[KEY_PREFIX, "features"]),
        "inference_log": dg.AssetIn(key=[KEY_PREFIX, "inference_log"]),
    },
    description="Evidently data drift of the current data (the inference log once it holds "
    "FINMATH_DRIFT_MIN_ROWS predictions, else the unlabelled test split) against the training "
    "features, one row per tested column. HTML in processed/reports/drift_report.html; each run "
    "appended to finmath.drift_history.",
)
def drift_report(
    context: dg.AssetExecutionContext,
    features: pd.DataFrame,
    inference_log: pd.DataFrame,
    monitor: MonitoringResource,
    processed_files: ProcessedFilesResource,
    warehouse: WarehouseResource,
) -> pd.DataFrame:
    columns = [c for c in features.columns if c not in ID_COLUMNS]
    reference = features[features["ground_truth"].notna()]
    if len(inference_log) >= monitor.min_rows:
        current, source = monitoring.logged_features(inference_log, columns), "inference_log"
    else:
        current, source = features[features["ground_truth"].isna()], "test_split"
        context.log.info(
            f"inference log holds {len(inference_log)} predictions (< {monitor.min_rows}): "
            "comparing the unlabelled test split instead"
        )
    snapshot, summary = monitoring.drift_report(reference, current, columns)
    path = processed_files.write_text(snapshot.get_html_str(as_iframe=False), monitor.drift_html)
    created = datetime.now(UTC)
    record = {
        "current_source": source,
        "reference_rows": len(reference),
        "current_rows": len(current),
        "drift_share": summary.drift_share,
        "drifted_columns": summary.drifted_columns,
        "embedding_drift_share": summary.embedding_drift_share,
    }
    # the inference service publishes the shares as Prometheus gauges (it never opens the
    # warehouse)
    processed_files.write_text(
        json.dumps({"created_at": created.isoformat(), **record}), monitor.drift_json
    )
    _append_history(warehouse, {"created_at": created, **record, "report": str(path)})
    context.add_output_metadata({**record, "report": dg.MetadataValue.path(str(path))})
    return summary.columns


@dg.asset(
    key_prefix=KEY_PREFIX,
    group_name=GROUP,
    io_manager_key=WAREHOUSE_IO_MANAGER,
    pool=DUCKDB_POOL,
    kinds={"duckdb", "evidently"},
    ins={"cv_predictions": dg.AssetIn(key=[KEY_PREFIX, "cv_predictions"])},
    description="Evidently RegressionPreset on the model's out-of-fold predictions, on the "
    "signed-log scale it is trained and promoted on. HTML in "
    "processed/reports/regression_quality_report.html.",
)
def regression_quality_report(
    context: dg.AssetExecutionContext,
    cv_predictions: pd.DataFrame,
    monitor: MonitoringResource,
    processed_files: ProcessedFilesResource,
) -> pd.DataFrame:
    snapshot, values = monitoring.regression_report(
        cv_predictions["ground_truth"], cv_predictions["model"], cv_predictions["topic"]
    )
    path = processed_files.write_text(
        snapshot.get_html_str(as_iframe=False), monitor.regression_html
    )
    context.add_output_metadata(
        {**{k: float(v) for k, v in values.items()}, "report": dg.MetadataValue.path(str(path))}
    )
    return pd.DataFrame({"metric": list(values), "value": list(values.values())})
