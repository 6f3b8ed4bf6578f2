"""Backfill of the bundled price history: Dagster's single-run backfill vs the same work alone.

    .venv/bin/python scripts/bench_market_backfill.py [--start 2000-03-01] [--end 2013-03-01]

1. ``market_prices_job`` over the partition range, in one run, on a fresh local (sqlite) Dagster
   instance and a fresh warehouse: what ``make run`` does.
2. The same computation without Dagster: load and validate the bars, compute the features, write
   both tables to DuckDB. The difference is Dagster's per-partition bookkeeping (a planned and a
   materialisation event per partition and asset).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--start", default="2000-03-01")
    parser.add_argument("--end", default="2013-03-01")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="finmath-bench-market-"))
    home = work / "home"
    (home / "dagster_home").mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster_home" / "dagster.yaml")
    os.environ.update(FINMATH_HOME=str(home), DAGSTER_HOME=str(home / "dagster_home"))

    import dagster as dg
    import duckdb

    from finmath_assets.core.market.features import price_features
    from finmath_assets.core.market.prices import load_price_window
    from finmath_assets.definitions import build_definitions
    from finmath_assets.defs.market.partitions import TRADING_DAYS

    partitions = TRADING_DAYS.get_partition_keys_in_range(
        dg.PartitionKeyRange(args.start, args.end)
    )
    job = build_definitions().resolve_job_def("market_prices_job")
    assets = len(job.asset_layer.selected_asset_keys)
    with dg.DagsterInstance.get() as instance:
        started = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": args.start,
                "dagster/asset_partition_range_end": args.end,
            },
        )
        dagster_seconds = time.perf_counter() - started
        assert result.success
        events = len(result.all_events)

    started = time.perf_counter()
    end = date.fromisoformat(args.end) + timedelta(days=1)
    validated, _ = load_price_window(date.fromisoformat(args.start), end, landing_dir=None)
    tables = {
        "prices": validated.valid,
        "rejected": validated.rejected,
        "features": price_features(validated.valid),
    }
    with duckdb.connect(str(work / "alone.duckdb")) as conn:
        for name, frame in tables.items():
            conn.register("frame", frame)
            conn.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
            conn.unregister("frame")
    alone_seconds = time.perf_counter() - started
    shutil.rmtree(work, ignore_errors=True)

    bars = len(validated.valid)
    print(f"{len(partitions):,} trading-day partitions x {assets} assets, {bars:,} bars")
    print(
        f"  Dagster single-run backfill (sqlite instance): {dagster_seconds:7.1f} s "
        f"({events:,} run events)"
    )
    print(f"  the same work without Dagster:                 {alone_seconds:7.1f} s")
    print(
        f"  target (issue): <= 60 s; per partition and asset: "
        f"{1000 * dagster_seconds / (len(partitions) * assets):.1f} ms"
    )


if __name__ == "__main__":
    main()
