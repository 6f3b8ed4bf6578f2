"""Asset checks on the stored price bars (the warehouse table, every partition).

Validation already quarantines bad bars; these checks guard the table itself (a bug, a manual
write, a partition written by an older contract). The first three are blocking: a failure skips
price_features in the same run and keeps the forecaster from training on bad bars.
"""

import dagster as dg

from finmath_assets.defs.constants import DUCKDB_POOL, MARKET_PREFIX
from finmath_assets.defs.partitions import TRADING_DAYS
from finmath_assets.defs.resources import WarehouseResource

PRICES = dg.AssetKey([MARKET_PREFIX, "market_prices"])
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


MARKET_CHECKS = [no_duplicate_ticker_date, ohlc_consistent, no_negative_volume, partitions_complete]
