"""The Dagster code location: ``dagster ... -m finmath_assets.definitions``."""

from __future__ import annotations

import dagster as dg

from finmath_assets.defs.alerts import (
    build_check_failure_alerts,
    build_freshness_alerts,
    run_failure_alerts,
)
from finmath_assets.defs.assets import (
    embeddings,
    features,
    forecasting,
    ingestion,
    llm,
    llm_eval,
    market,
    model,
    monitoring,
    tables,
    transactions,
)
from finmath_assets.defs.automation import (
    FRESHNESS_ASSETS,
    MARKET_FRESHNESS_ASSETS,
    with_automation,
    with_market_freshness,
)
from finmath_assets.defs.checks import CHECKS, QuarantineLimitsResource
from finmath_assets.defs.constants import KEY_PREFIX, WAREHOUSE_IO_MANAGER
from finmath_assets.defs.executors import build_executor
from finmath_assets.defs.market_checks import MARKET_CHECKS
from finmath_assets.defs.partitions import TRADING_DAYS, TRANSACTION_FILES
from finmath_assets.defs.resources import (
    AlertSinkResource,
    EmbeddingModelResource,
    FinanceMathSourceResource,
    ForecastingResource,
    LLMResource,
    MarketFeedsResource,
    MlflowTrackingResource,
    MonitoringResource,
    ProcessedFilesResource,
    QualityResource,
    SandboxResource,
    TrainingResource,
    WarehouseIOManager,
    WarehouseResource,
)
from finmath_assets.defs.sensors import (
    build_inference_log_sensor,
    build_price_files_sensor,
    build_transaction_files_sensor,
)
from finmath_assets.settings import Settings

ASSET_MODULES = [ingestion, tables, embeddings, features, model, monitoring, llm]
MARKET_ASSET_MODULES = [market, transactions, forecasting]
# The FinanceMath graph (unpartitioned, `finmath/...`) and the market half (`market/...`, partly
# partitioned) run as separate jobs: one run cannot mix partitioned and unpartitioned assets.
FINANCEMATH = dg.AssetSelection.key_prefixes(KEY_PREFIX)
MARKET_PRICES_JOB = dg.define_asset_job(
    "market_prices_job",
    selection=dg.AssetSelection.groups(market.GROUP),
    partitions_def=TRADING_DAYS,
    description="Ingest and featurise trading days of price bars (one day or a range).",
)
TRANSACTIONS_JOB = dg.define_asset_job(
    "transactions_job",
    selection=dg.AssetSelection.groups(transactions.GROUP),
    partitions_def=TRANSACTION_FILES,
    description="Ingest one landed card-transaction file.",
)
LLM_EVAL_JOB = dg.define_asset_job(
    "llm_eval_job",
    selection=dg.AssetSelection.groups(llm_eval.GROUP),
    description="Evaluate the LLM endpoint (FINMATH_LLM_BASE_URL) on the validation split.",
)
FORECAST_JOB = dg.define_asset_job(
    "forecast_job",
    selection=dg.AssetSelection.groups(forecasting.GROUP),
    description="Backtest, retrain and register the market forecasters.",
)


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """All definitions, wired to ``settings`` (default: read from the environment)."""
    settings = settings or Settings()
    settings.home.mkdir(parents=True, exist_ok=True)  # DuckDB creates the file, not its folder
    assets = with_automation(dg.load_assets_from_modules(ASSET_MODULES), settings)
    market_assets = with_market_freshness(
        dg.load_assets_from_modules(MARKET_ASSET_MODULES), settings
    )
    return dg.Definitions(
        assets=[*assets, *market_assets, *dg.load_assets_from_modules([llm_eval])],
        asset_checks=[*CHECKS, *MARKET_CHECKS],
        schedules=[
            dg.ScheduleDefinition(
                name="weekly_forecaster_retrain",
                job=FORECAST_JOB,
                cron_schedule="0 6 * * 6",
                default_status=dg.DefaultScheduleStatus.RUNNING,
                description="Saturday 06:00 UTC: backtest and retrain on the week's prices.",
            )
        ],
        sensors=[
            dg.AutomationConditionSensorDefinition(
                "finmath_automation",
                target=FINANCEMATH,
                default_status=dg.DefaultSensorStatus.RUNNING,
                description="Evaluates every asset's automation condition (daily re-ingest, "
                "then eager rebuilds downstream once blocking checks pass).",
            ),
            build_check_failure_alerts(
                [k for c in (*CHECKS, *MARKET_CHECKS) for k in c.check_keys]
            ),
            build_freshness_alerts([*FRESHNESS_ASSETS, *MARKET_FRESHNESS_ASSETS]),
            run_failure_alerts,
            build_inference_log_sensor(settings.inference_log_dir),
            build_price_files_sensor(
                MarketFeedsResource.from_settings(settings).prices_dir,
                MARKET_PRICES_JOB.name,
                TRADING_DAYS,
            ),
            build_transaction_files_sensor(
                MarketFeedsResource.from_settings(settings).transactions_dir,
                TRANSACTIONS_JOB.name,
                TRANSACTION_FILES,
            ),
        ],
        jobs=[
            dg.define_asset_job(
                "finmath_job",
                selection=FINANCEMATH,
                description="Materialise the FinanceMath graph: raw records to an evaluated model.",
            ),
            MARKET_PRICES_JOB,
            TRANSACTIONS_JOB,
            FORECAST_JOB,
            LLM_EVAL_JOB,
        ],
        resources={
            WAREHOUSE_IO_MANAGER: WarehouseIOManager(database=str(settings.warehouse_path)),
            "warehouse": WarehouseResource(database=str(settings.warehouse_path)),
            "financemath_source": FinanceMathSourceResource.from_settings(settings),
            "embedding_model": EmbeddingModelResource.from_settings(settings),
            "processed_files": ProcessedFilesResource.from_settings(settings),
            "mlflow_tracking": MlflowTrackingResource.from_settings(settings),
            "training": TrainingResource.from_settings(settings),
            "thresholds": QualityResource.from_settings(settings),
            "sandbox": SandboxResource.from_settings(settings),
            "quarantine_limits": QuarantineLimitsResource.from_settings(settings),
            "alerts": AlertSinkResource.from_settings(settings),
            "monitor": MonitoringResource.from_settings(settings),
            "market_feeds": MarketFeedsResource.from_settings(settings),
            "forecasting": ForecastingResource.from_settings(settings),
            "llm": LLMResource.from_settings(settings),
        },
        executor=build_executor(settings.executor),
    )


defs = build_definitions()
