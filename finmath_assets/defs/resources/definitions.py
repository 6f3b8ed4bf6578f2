"""The resources every domain shares, keyed as the assets and checks ask for them."""

import dagster as dg

from finmath_assets.defs.constants import WAREHOUSE_IO_MANAGER
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
    QuarantineLimitsResource,
    SandboxResource,
    TrainingResource,
    WarehouseIOManager,
    WarehouseResource,
)
from finmath_assets.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
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
        }
    )
