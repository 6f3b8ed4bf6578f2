"""Jobs and the schedule of the market half. Its assets run as their own jobs: one run cannot
mix partitioned and unpartitioned assets."""

import dagster as dg

from finmath_assets.defs.market.assets import forecasting, prices, transactions
from finmath_assets.defs.market.partitions import TRADING_DAYS, TRANSACTION_FILES

MARKET_PRICES_JOB = dg.define_asset_job(
    "market_prices_job",
    selection=dg.AssetSelection.groups(prices.GROUP),
    partitions_def=TRADING_DAYS,
    description="Ingest and featurise trading days of price bars (one day or a range).",
)
TRANSACTIONS_JOB = dg.define_asset_job(
    "transactions_job",
    selection=dg.AssetSelection.groups(transactions.GROUP),
    partitions_def=TRANSACTION_FILES,
    description="Ingest one landed card-transaction file.",
)
FORECAST_JOB = dg.define_asset_job(
    "forecast_job",
    selection=dg.AssetSelection.groups(forecasting.GROUP),
    description="Backtest, retrain and register the market forecasters.",
)
WEEKLY_RETRAIN = dg.ScheduleDefinition(
    name="weekly_forecaster_retrain",
    job=FORECAST_JOB,
    cron_schedule="0 6 * * 6",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Saturday 06:00 UTC: backtest and retrain on the week's prices.",
)
