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
    ingestion,
    model,
    monitoring,
    tables,
)
from finmath_assets.defs.automation import FRESHNESS_ASSETS, with_automation
from finmath_assets.defs.checks import CHECKS
from finmath_assets.defs.constants import WAREHOUSE_IO_MANAGER
from finmath_assets.defs.executors import build_executor
from finmath_assets.defs.resources import (
    AlertSinkResource,
    EmbeddingModelResource,
    FinanceMathSourceResource,
    MlflowTrackingResource,
    MonitoringResource,
    ProcessedFilesResource,
    QualityResource,
    TrainingResource,
    WarehouseIOManager,
    WarehouseResource,
)
from finmath_assets.defs.sensors import build_inference_log_sensor
from finmath_assets.settings import Settings

ASSET_MODULES = [ingestion, tables, embeddings, features, model, monitoring]


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """All definitions, wired to ``settings`` (default: read from the environment)."""
    settings = settings or Settings()
    settings.home.mkdir(parents=True, exist_ok=True)  # DuckDB creates the file, not its folder
    assets = with_automation(dg.load_assets_from_modules(ASSET_MODULES), settings)
    return dg.Definitions(
        assets=assets,
        asset_checks=CHECKS,
        sensors=[
            dg.AutomationConditionSensorDefinition(
                "finmath_automation",
                target=dg.AssetSelection.all(),
                default_status=dg.DefaultSensorStatus.RUNNING,
                description="Evaluates every asset's automation condition (daily re-ingest, "
                "then eager rebuilds downstream once blocking checks pass).",
            ),
            build_check_failure_alerts([k for c in CHECKS for k in c.check_keys]),
            build_freshness_alerts(list(FRESHNESS_ASSETS)),
            run_failure_alerts,
            build_inference_log_sensor(settings.inference_log_dir),
        ],
        jobs=[
            dg.define_asset_job(
                "finmath_job",
                selection=dg.AssetSelection.all(),
                description="Materialise the whole graph: raw records to an evaluated model.",
            )
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
            "alerts": AlertSinkResource.from_settings(settings),
            "monitor": MonitoringResource.from_settings(settings),
        },
        executor=build_executor(settings.executor),
    )


defs = build_definitions()
