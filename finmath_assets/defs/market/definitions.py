"""The market domain's definitions, wired to the settings."""

import dagster as dg

from finmath_assets.defs.code_versions import load_versioned_assets
from finmath_assets.defs.market import checks, jobs
from finmath_assets.defs.market.assets import forecasting, prices, transactions
from finmath_assets.defs.market.automation import with_freshness
from finmath_assets.defs.market.partitions import TRADING_DAYS, TRANSACTION_FILES
from finmath_assets.defs.market.sensors import (
    build_price_files_sensor,
    build_transaction_files_sensor,
)
from finmath_assets.defs.resources import MarketFeedsResource
from finmath_assets.settings import Settings

ASSET_MODULES = [prices, transactions, forecasting]


def build_defs(settings: Settings) -> dg.Definitions:
    feeds = MarketFeedsResource.from_settings(settings)
    interval = settings.sensor_interval_seconds
    return dg.Definitions(
        assets=with_freshness(load_versioned_assets(ASSET_MODULES), settings),
        asset_checks=checks.MARKET_CHECKS,
        jobs=[jobs.MARKET_PRICES_JOB, jobs.TRANSACTIONS_JOB, jobs.FORECAST_JOB],
        schedules=[jobs.WEEKLY_RETRAIN],
        sensors=[
            build_price_files_sensor(
                feeds.prices_dir, jobs.MARKET_PRICES_JOB.name, TRADING_DAYS, interval
            ),
            build_transaction_files_sensor(
                feeds.transactions_dir, jobs.TRANSACTIONS_JOB.name, TRANSACTION_FILES, interval
            ),
        ],
    )
