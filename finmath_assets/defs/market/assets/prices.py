"""Daily price bars, trading-day partitioned: market_prices (+ quarantine) -> price_features.

A run covers one partition (a sensor-requested drop-folder day) or a range (a backfill, one run
thanks to ``BackfillPolicy.single_run()``); re-running a range replaces exactly its rows
(``partition_expr``). Features read ``LOOKBACK_DAYS`` partitions before their window, so a
one-day run computes the same rolling values as the full backfill.
"""

import dagster as dg
import pandas as pd

from finmath_assets.core.market import features as market_features
from finmath_assets.core.market.prices import load_price_window
from finmath_assets.defs.constants import DUCKDB_POOL, MARKET_PREFIX, WAREHOUSE_IO_MANAGER
from finmath_assets.defs.market.partitions import TRADING_DAYS
from finmath_assets.defs.resources import MarketFeedsResource

GROUP = "market_data"


@dg.multi_asset(
    outs={
        "market_prices": dg.AssetOut(
            key_prefix=MARKET_PREFIX,
            io_manager_key=WAREHOUSE_IO_MANAGER,
            metadata={"partition_expr": "date"},
            kinds={"duckdb", "pydantic"},
            description="Validated daily OHLCV bars (`PriceBar`), one row per ticker and "
            "trading day: the bundled bokeh-sampledata history, or a drop-folder file for its day.",
        ),
        "rejected_market_prices": dg.AssetOut(
            key_prefix=MARKET_PREFIX,
            io_manager_key=WAREHOUSE_IO_MANAGER,
            metadata={"partition_expr": "partition_date"},
            kinds={"duckdb", "pydantic"},
            description="Quarantine: every bar (or whole file) that failed validation, with its "
            "raw payload and every reason.",
        ),
    },
    group_name=GROUP,
    partitions_def=TRADING_DAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
)
def ingest_market_prices(context: dg.AssetExecutionContext, market_feeds: MarketFeedsResource):
    window = context.partition_time_window
    start, end = window.start.date(), window.end.date()
    result, sources = load_price_window(
        start,
        end,
        landing_dir=market_feeds.prices_dir,
        include_bundled=market_feeds.include_bundled,
    )
    rejected = result.rejected.copy()
    # a rejected bar belongs to the partition it was read for: its file's day, else the run start
    file_day = pd.to_datetime(
        rejected["source"].str.extract(r"prices_(\d{4}-\d{2}-\d{2})\.csv")[0], errors="coerce"
    )
    rejected.insert(0, "partition_date", file_day.fillna(pd.Timestamp(start)))
    files = sorted(s for s in sources if s != "bokeh-sampledata")
    context.log.info(
        f"{start}..{end}: {len(result.valid)} bars, {len(rejected)} rejected "
        f"({len(files)} drop-folder file(s))"
    )
    yield dg.Output(
        result.valid,
        output_name="market_prices",
        metadata={
            "window": f"{start}..{end}",
            "tickers": ", ".join(sorted(result.valid["ticker"].unique())),
            "rows_per_source": dg.MetadataValue.json(sources),
        },
    )
    yield dg.Output(
        rejected,
        output_name="rejected_market_prices",
        metadata={"reject_rate": round(result.reject_rate, 6)},
    )


@dg.asset(
    key_prefix=MARKET_PREFIX,
    group_name=GROUP,
    io_manager_key=WAREHOUSE_IO_MANAGER,
    partitions_def=TRADING_DAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
    metadata={"partition_expr": "date"},
    kinds={"duckdb", "pandas"},
    ins={
        "market_prices": dg.AssetIn(
            key=[MARKET_PREFIX, "market_prices"],
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-market_features.LOOKBACK_DAYS,
                allow_nonexistent_upstream_partitions=True,
            ),
        )
    },
    description="Per-ticker daily features: log and simple returns, 20-day volatility, volume "
    "z-score, intraday range, calendar fields (NaN where the history is too short).",
)
def price_features(context: dg.AssetExecutionContext, market_prices: pd.DataFrame) -> pd.DataFrame:
    window = context.partition_time_window
    features = market_features.price_features(market_prices)
    inside = (features["date"] >= window.start.replace(tzinfo=None)) & (
        features["date"] < window.end.replace(tzinfo=None)
    )
    features = features[inside].reset_index(drop=True)
    context.log.info(
        f"{len(features)} feature rows from {len(market_prices)} bars (incl. look-back)"
    )
    return features
