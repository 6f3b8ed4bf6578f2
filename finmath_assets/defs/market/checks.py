"""Asset checks on the stored price bars (the warehouse table, every partition) and on the two
market quarantines (the partitions of the run).

Validation already quarantines bad bars; these checks guard the table itself (a bug, a manual
write, a partition written by an older contract). The first three are blocking: a failure skips
price_features in the same run and keeps the forecaster from training on bad bars. The
quarantine checks fail (ERROR) on a landing file rejected whole or too many rejected rows, so an
empty day is never mistaken for a holiday.
"""

import dataclasses
import json
from collections import defaultdict

import dagster as dg

from finmath_assets.core import quality
from finmath_assets.core.market.quarantine import FILE_ROW_INDEX
from finmath_assets.defs.constants import DUCKDB_POOL, MARKET_PREFIX
from finmath_assets.defs.market.partitions import TRADING_DAYS
from finmath_assets.defs.resources import QuarantineLimitsResource, WarehouseResource

PRICES = dg.AssetKey([MARKET_PREFIX, "market_prices"])
REJECTED_PRICES = dg.AssetKey([MARKET_PREFIX, "rejected_market_prices"])
TRANSACTIONS = dg.AssetKey([MARKET_PREFIX, "card_transactions"])
REJECTED_TRANSACTIONS = dg.AssetKey([MARKET_PREFIX, "rejected_card_transactions"])
TABLE = f"{MARKET_PREFIX}.market_prices"
SAMPLE = 10


def _violations(warehouse: WarehouseResource, where: str, columns: str) -> tuple[int, list]:
    with warehouse.get_connection() as conn:
        count = conn.execute(f"SELECT count(*) FROM {TABLE} WHERE {where}").fetchone()[0]
        sample = conn.execute(
            f"SELECT {columns} FROM {TABLE} WHERE {where} ORDER BY ALL LIMIT {SAMPLE}"
        ).fetchall()
    return count, [" ".join(str(v) for v in row) for row in sample]


def _result(count: int, sample: list[str], what: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=count == 0,
        description=f"{count} {what}" if count else f"no {what}",
        metadata={"violations": count, "sample": dg.MetadataValue.json(sample)},
    )


@dg.asset_check(asset=PRICES, blocking=True, pool=DUCKDB_POOL)
def no_duplicate_ticker_date(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """At most one bar per (ticker, date)."""
    with warehouse.get_connection() as conn:
        rows = conn.execute(
            f"SELECT ticker, date::DATE, count(*) AS n FROM {TABLE} GROUP BY ALL HAVING n > 1 "
            "ORDER BY ALL"
        ).fetchall()
    return _result(len(rows), [f"{t} {d} x{n}" for t, d, n in rows[:SAMPLE]], "repeated bars")


@dg.asset_check(asset=PRICES, blocking=True, pool=DUCKDB_POOL)
def ohlc_consistent(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """low <= open, close <= high on every bar."""
    where = "low > least(open, close) OR high < greatest(open, close) OR low > high"
    count, sample = _violations(warehouse, where, "ticker, date::DATE, open, high, low, close")
    return _result(count, sample, "bars outside their own low/high")


@dg.asset_check(asset=PRICES, blocking=True, pool=DUCKDB_POOL)
def no_negative_volume(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Volume is never negative (or missing)."""
    count, sample = _violations(
        warehouse, "volume < 0 OR volume IS NULL", "ticker, date::DATE, volume"
    )
    return _result(count, sample, "bars with a negative or missing volume")


@dg.asset_check(asset=PRICES, pool=DUCKDB_POOL)
def partitions_complete(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    """No trading-day partition is missing between the first and last one materialised, and no
    ticker misses a day on which the exchange traded (another ticker has a bar) within its own
    first..last dates. Exchange holidays are empty partitions, not gaps."""
    materialized = sorted(context.instance.get_materialized_partitions(PRICES))
    missing: list[str] = []
    if materialized:
        expected = TRADING_DAYS.get_partition_keys_in_range(
            dg.PartitionKeyRange(materialized[0], materialized[-1])
        )
        missing = sorted(set(expected) - set(materialized))
    with warehouse.get_connection() as conn:
        gaps = conn.execute(
            f"""
            WITH days AS (SELECT DISTINCT date FROM {TABLE}),
                 spans AS (SELECT ticker, min(date) AS first, max(date) AS last
                           FROM {TABLE} GROUP BY ticker)
            SELECT s.ticker, d.date::DATE
            FROM spans s JOIN days d ON d.date BETWEEN s.first AND s.last
            ANTI JOIN {TABLE} p ON p.ticker = s.ticker AND p.date = d.date
            ORDER BY ALL
            """
        ).fetchall()
    passed = not missing and not gaps
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description="complete"
        if passed
        else f"{len(missing)} partition(s) never materialised, {len(gaps)} ticker-day gap(s)",
        metadata={
            "materialized_partitions": len(materialized),
            "missing_partitions": len(missing),
            "missing_sample": dg.MetadataValue.json(missing[:SAMPLE]),
            "ticker_day_gaps": len(gaps),
            "gap_sample": dg.MetadataValue.json([f"{t} {d}" for t, d in gaps[:SAMPLE]]),
        },
    )


def _run_partitions(context: dg.AssetCheckExecutionContext) -> list[str] | None:
    """The partitions of the run (one, or a backfill's range); None outside a partitioned run."""
    op = context.op_execution_context
    return op.partition_keys if op.has_partition_key or op.has_partition_key_range else None


def _parts(rows: list[tuple], rows_read: dict[str, int] | None = None) -> list:
    """``(partition, source, row_index, key, reasons)`` rows as one QuarantinePart per partition."""
    grouped: dict[str, list[tuple]] = defaultdict(list)
    for row in rows:
        grouped[str(row[0])].append(row)
    parts = []
    for name, group in sorted(grouped.items()):
        whole = tuple(
            f"{source} rejected whole ({'; '.join(json.loads(reasons))})"
            for _, source, index, _, reasons in group
            if index == FILE_ROW_INDEX
        )
        examples = tuple(
            f"{key}: {'; '.join(json.loads(reasons))}"
            for _, _, index, key, reasons in group[:SAMPLE]
            if index != FILE_ROW_INDEX
        )
        read = (rows_read or {}).get(name, 0) + len(group)
        parts.append(quality.QuarantinePart(name, len(group), read, whole, examples))
    return parts


def _quarantine_result(outcome: quality.Outcome, **metadata: object) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=outcome.passed,
        description=outcome.description,
        metadata={**outcome.metadata, **metadata},
        severity=dg.AssetCheckSeverity.ERROR,
    )


@dg.asset_check(asset=REJECTED_PRICES, name="quarantine_within_limit", pool=DUCKDB_POOL)
def rejected_prices_within_limit(
    context: dg.AssetCheckExecutionContext,
    warehouse: WarehouseResource,
    quarantine_limits: QuarantineLimitsResource,
) -> dg.AssetCheckResult:
    """In each trading day of the run: no landing file rejected whole (the day would look like a
    holiday) and at most FINMATH_CHECK_MAX_REJECTED_BARS_PER_DAY rejected bars. Error, not
    blocking: nothing reads the quarantine, the run's other days are sound, and the fix is a
    corrected file, which the price_files sensor ingests again."""
    keys = _run_partitions(context)
    where, params = "true", []
    if keys is not None:
        window = context.op_execution_context.partition_time_window
        where = "partition_date >= ? AND partition_date < ?"
        params = [window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)]
    with warehouse.get_connection() as conn:
        rows = conn.execute(
            "SELECT partition_date::DATE, source, row_index, key, reasons "
            f"FROM {MARKET_PREFIX}.rejected_market_prices WHERE {where} ORDER BY ALL",
            params,
        ).fetchall()
        days = sorted({str(r[0]) for r in rows if r[2] == FILE_ROW_INDEX})
        stored = dict(
            conn.execute(
                f"SELECT date::DATE::VARCHAR, count(*) FROM {TABLE} "
                "WHERE list_contains(?::VARCHAR[], date::DATE::VARCHAR) GROUP BY 1",
                [days],
            ).fetchall()
        )
    parts = [
        dataclasses.replace(
            p,
            whole_files=(*p.whole_files, f"{stored.get(p.name, 0)} bars stored: not a holiday"),
        )
        if p.whole_files
        else p
        for p in _parts(rows)
    ]
    outcome = quality.quarantine(
        parts,
        what="bars",
        checked=len(keys) if keys is not None else len({r[0] for r in rows}),
        max_rejected=quarantine_limits.max_rejected_bars_per_day,
    )
    return _quarantine_result(
        outcome,
        days_with_a_rejected_file=dg.MetadataValue.json(days),
        bars_stored_on_those_days=dg.MetadataValue.json({d: stored.get(d, 0) for d in days}),
    )


@dg.asset_check(
    asset=REJECTED_TRANSACTIONS,
    name="quarantine_within_limit",
    additional_deps=[TRANSACTIONS],
    pool=DUCKDB_POOL,
)
def rejected_transactions_within_limit(
    context: dg.AssetCheckExecutionContext,
    warehouse: WarehouseResource,
    quarantine_limits: QuarantineLimitsResource,
) -> dg.AssetCheckResult:
    """In each landed file of the run: not rejected whole, and at most
    FINMATH_CHECK_MAX_TRANSACTION_REJECT_SHARE of its rows quarantined (the synthetic feed breaks
    1 % on purpose). Error, not blocking: nothing reads the quarantine yet, and the fix is a
    corrected file."""
    keys = _run_partitions(context)
    where, params = "true", []
    if keys is not None:
        where, params = "list_contains(?::VARCHAR[], source_file)", [keys]
    with warehouse.get_connection() as conn:
        rows = conn.execute(
            "SELECT source_file, source, row_index, key, reasons "
            f"FROM {MARKET_PREFIX}.rejected_card_transactions WHERE {where} ORDER BY ALL",
            params,
        ).fetchall()
        valid = dict(
            conn.execute(
                f"SELECT source_file, count(*) FROM {MARKET_PREFIX}.card_transactions "
                f"WHERE {where} GROUP BY 1",
                params,
            ).fetchall()
        )
    outcome = quality.quarantine(
        _parts(rows, valid),
        what="rows",
        checked=len(keys) if keys is not None else len(valid.keys() | {r[0] for r in rows}),
        max_share=quarantine_limits.max_transaction_reject_share,
    )
    return _quarantine_result(outcome)


MARKET_CHECKS = [
    no_duplicate_ticker_date,
    ohlc_consistent,
    no_negative_volume,
    partitions_complete,
    rejected_prices_within_limit,
    rejected_transactions_within_limit,
]
