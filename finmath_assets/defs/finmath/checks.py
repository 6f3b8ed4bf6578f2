"""Asset checks: the data-quality rules of ``core.quality`` run against the warehouse.

All but the drift, ground-truth and quarantine checks are blocking: a failure fails the run,
skips the downstream assets in it, and (through
``AutomationCondition.all_deps_blocking_checks_passed``) keeps automation from building on the
bad table later. Each reads only what it needs, with SQL, through the warehouse resource.
"""

import functools
import json
import time
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import duckdb
import numpy as np

from finmath_assets.core import quality
from finmath_assets.core.features import ID_COLUMNS, feature_columns
from finmath_assets.core.sandbox import isolation as isolation_label
from finmath_assets.core.sandbox import run_solution
from finmath_assets.defs.constants import DUCKDB_POOL, KEY_PREFIX
from finmath_assets.defs.resources import (
    EmbeddingModelResource,
    MonitoringResource,
    QualityResource,
    QuarantineLimitsResource,
    SandboxResource,
    WarehouseResource,
)


def _key(name: str) -> dg.AssetKey:
    return dg.AssetKey([KEY_PREFIX, name])


def _validated_ids(conn: duckdb.DuckDBPyConnection) -> list[str]:
    query = f"SELECT question_id FROM {KEY_PREFIX}.validated_records"
    return [row[0] for row in conn.execute(query).fetchall()]


def _result(
    outcome: quality.Outcome,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    **metadata: object,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=outcome.passed,
        description=outcome.description,
        metadata={**outcome.metadata, **metadata},
        severity=severity,
    )


# every check reads the warehouse: in the duckdb pool, it never runs beside another run's writer
warehouse_check = functools.partial(dg.asset_check, pool=DUCKDB_POOL)


@warehouse_check(
    asset=_key("validated_records"),
    blocking=True,
    additional_deps=[_key("raw_records"), _key("rejected_records")],
    description="At most FINMATH_CHECK_MAX_REJECT_RATE of the raw rows were quarantined.",
)
def reject_rate(warehouse: WarehouseResource, thresholds: QualityResource) -> dg.AssetCheckResult:
    with warehouse.get_connection() as conn:
        (n_raw,) = conn.execute(f"SELECT count(*) FROM {KEY_PREFIX}.raw_records").fetchone()
        (n_rejected,) = conn.execute(
            f"SELECT count(*) FROM {KEY_PREFIX}.rejected_records"
        ).fetchone()
    return _result(quality.reject_rate(n_raw, n_rejected, thresholds.max_reject_rate))


@warehouse_check(
    asset=_key("rejected_records"),
    name="quarantine_within_limit",
    additional_deps=[_key("raw_records")],
    description="At most FINMATH_CHECK_MAX_REJECTED_RECORDS rows were quarantined, each named "
    "with its reason. Warn, not blocking: nothing reads the quarantine, and reject_rate already "
    "gates downstream on the share; this makes every quarantined record an alert.",
)
def rejected_records_within_limit(
    warehouse: WarehouseResource, quarantine_limits: QuarantineLimitsResource
) -> dg.AssetCheckResult:
    with warehouse.get_connection() as conn:
        (n_raw,) = conn.execute(f"SELECT count(*) FROM {KEY_PREFIX}.raw_records").fetchone()
        rows = conn.execute(
            "SELECT split, row_index, question_id, reasons "
            f"FROM {KEY_PREFIX}.rejected_records ORDER BY split, row_index"
        ).fetchall()
    examples = tuple(
        f"{split}[{index}] {qid or 'no id'}: {'; '.join(json.loads(reasons))}"
        for split, index, qid, reasons in rows[:10]
    )
    part = quality.QuarantinePart("", len(rows), n_raw, examples=examples)
    outcome = quality.quarantine(
        [part], what="records", checked=1, max_rejected=quarantine_limits.max_rejected_records
    )
    return _result(outcome, dg.AssetCheckSeverity.WARN, examples=dg.MetadataValue.json(examples))


@warehouse_check(
    asset=_key("validated_records"),
    blocking=True,
)
def unique_question_ids(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.get_connection() as conn:
        ids = _validated_ids(conn)
    return _result(quality.unique_ids(ids))


@warehouse_check(
    asset=_key("validated_records"),
    blocking=True,
    description="The number of labelled records is FINMATH_CHECK_EXPECTED_LABELLED.",
)
def labelled_count(
    warehouse: WarehouseResource, thresholds: QualityResource
) -> dg.AssetCheckResult:
    with warehouse.get_connection() as conn:
        (n,) = conn.execute(
            f"SELECT count(*) FROM {KEY_PREFIX}.validated_records WHERE ground_truth IS NOT NULL"
        ).fetchone()
    return _result(quality.labelled_count(n, thresholds.expected_labelled))


@warehouse_check(
    asset=_key("validated_records"),
    description="Each labelled record's python_solution, run in the sandbox (core/sandbox.py: "
    "no processes, no network, time and memory limits; bubblewrap, or its seccomp fallback), "
    "reproduces its ground_truth at 3 decimals. Warn: a mismatch is a data question, not a "
    "broken pipeline.",
)
def ground_truth_reproducible(
    context: dg.AssetCheckExecutionContext,
    warehouse: WarehouseResource,
    sandbox: SandboxResource,
) -> dg.AssetCheckResult:
    with warehouse.get_connection() as conn:
        rows = conn.execute(
            "SELECT question_id, python_solution, ground_truth "
            f"FROM {KEY_PREFIX}.validated_records WHERE ground_truth IS NOT NULL "
            "ORDER BY question_id"
        ).fetchall()
    limits = sandbox.limits()
    isolation = isolation_label(limits.isolation)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:  # each program is its own process
        results = list(pool.map(lambda row: run_solution(row[1] or "", limits), rows))
    context.log.info(
        f"ran {len(rows)} programs in {time.perf_counter() - started:.1f} s ({isolation})"
    )
    outcome = quality.reproducible(
        [r[0] for r in rows],
        [r[2] for r in rows],
        [r.status for r in results],
        [r.value for r in results],
    )
    return _result(outcome, dg.AssetCheckSeverity.WARN, isolation=isolation)


@warehouse_check(
    asset=_key("question_tables"),
    blocking=True,
    description="At least FINMATH_CHECK_MIN_NUMERIC_SHARE of the cells with a digit parsed.",
)
def numeric_cells_parse(
    warehouse: WarehouseResource, thresholds: QualityResource
) -> dg.AssetCheckResult:
    with warehouse.get_connection() as conn:
        rows = conn.execute(
            f"SELECT cell_text, value IS NOT NULL FROM {KEY_PREFIX}.question_tables"
        ).fetchall()
    return _result(
        quality.numeric_parse_share(
            [r[0] for r in rows], [r[1] for r in rows], thresholds.min_numeric_share
        )
    )


@warehouse_check(
    asset=_key("question_embeddings"),
    blocking=True,
    additional_deps=[_key("validated_records")],
    description="One finite unit vector of the model's dimension per validated record.",
)
def embeddings_are_sound(
    warehouse: WarehouseResource, embedding_model: EmbeddingModelResource
) -> dg.AssetCheckResult:
    with warehouse.get_connection() as conn:
        rows = conn.execute(
            f"SELECT question_id, embedding FROM {KEY_PREFIX}.question_embeddings"
        ).fetchall()
        expected = _validated_ids(conn)
    vectors = np.array([r[1] for r in rows], dtype=np.float64)
    dimension = embedding_model.get_embedder().dimension  # the configured model's, not the data's
    return _result(quality.embeddings([r[0] for r in rows], vectors, expected, dimension))


@warehouse_check(
    asset=_key("features"),
    blocking=True,
    additional_deps=[_key("validated_records"), _key("question_embeddings")],
    description="A row per validated record, the feature code's exact column list, and no "
    "all-null column.",
)
def feature_table_is_complete(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    table = f"{KEY_PREFIX}.features"
    with warehouse.get_connection() as conn:
        columns = [r[0] for r in conn.execute(f"DESCRIBE {table}").fetchall()]
        features = [c for c in columns if c not in ID_COLUMNS]
        counts = conn.execute(
            "SELECT count(*), " + ", ".join(f'count("{c}")' for c in features) + f" FROM {table}"
        ).fetchone()
        (n_records,) = conn.execute(
            f"SELECT count(*) FROM {KEY_PREFIX}.validated_records"
        ).fetchone()
        (dim,) = conn.execute(
            f"SELECT max(len(embedding)) FROM {KEY_PREFIX}.question_embeddings"
        ).fetchone()
    all_null = [c for c, n in zip(features, counts[1:], strict=True) if n == 0]
    return _result(
        quality.feature_table(features, all_null, counts[0], feature_columns(dim or 0), n_records)
    )


@warehouse_check(
    asset=_key("answer_model"),
    blocking=True,
    description="The champion (the model the service and batch predictions use) beats the "
    "median baseline on cross-validation. The promotion gate already refuses a challenger "
    "that does not; this makes it visible and blocks the report and batch predictions when "
    "no champion does.",
)
def champion_beats_median_baseline(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.get_connection() as conn:
        promoted, trained, before, baseline = conn.execute(
            "SELECT promoted, cv_signed_log_mae, champion_metric_before, "
            f"cv_median_baseline_signed_log_mae FROM {KEY_PREFIX}.answer_model"
        ).fetchone()
    champion = trained if promoted else before
    if champion is None:
        return dg.AssetCheckResult(
            passed=False, description="there is no champion: no version passed the gate"
        )
    return _result(quality.beats_baseline(champion, baseline, "champion cv_signed_log_mae"))


@warehouse_check(
    asset=_key("drift_report"),
    description="At most FINMATH_DRIFT_MAX_SHARE of the tested columns drifted (warn: drift "
    "calls for a look and maybe a retrain, not for stopping the pipeline).",
)
def drift_share_within_limit(
    warehouse: WarehouseResource, monitor: MonitoringResource
) -> dg.AssetCheckResult:
    with warehouse.get_connection() as conn:
        share, drifted = conn.execute(
            f"SELECT drift_share, drifted_columns FROM {KEY_PREFIX}.drift_history "
            "ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
    outcome = quality.drift_share(share, monitor.max_drift_share, drifted)
    return _result(outcome, dg.AssetCheckSeverity.WARN)


CHECKS = [
    reject_rate,
    rejected_records_within_limit,
    unique_question_ids,
    labelled_count,
    ground_truth_reproducible,
    numeric_cells_parse,
    embeddings_are_sound,
    feature_table_is_complete,
    champion_beats_median_baseline,
    drift_share_within_limit,
]
