"""Partitions of the market-data assets."""

import dagster as dg

from finmath_assets.defs.constants import MARKET_HISTORY_START

# One partition per weekday (exchange holidays are empty partitions). end_offset=1 makes today a
# partition already, so a file dropped during the day can be ingested the same day.
TRADING_DAYS = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 0 * * 1-5",
    start=MARKET_HISTORY_START,
    fmt="%Y-%m-%d",
    end_offset=1,
)

# One partition per landed transaction file, added by the `transaction_files` sensor.
TRANSACTION_FILES = dg.DynamicPartitionsDefinition(name="transaction_files")
