"""The FinanceMath domain's definitions, wired to the settings."""

import dagster as dg

from finmath_assets.defs.code_versions import load_versioned_assets
from finmath_assets.defs.finmath import checks, jobs
from finmath_assets.defs.finmath.assets import (
    embeddings,
    features,
    ingestion,
    model,
    monitoring,
    tables,
)
from finmath_assets.defs.finmath.automation import with_automation
from finmath_assets.defs.finmath.sensors import build_inference_log_sensor
from finmath_assets.settings import Settings

ASSET_MODULES = [ingestion, tables, embeddings, features, model, monitoring]


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=with_automation(load_versioned_assets(ASSET_MODULES), settings),
        asset_checks=checks.CHECKS,
        jobs=[jobs.FINMATH_JOB],
        sensors=[
            jobs.build_automation_sensor(settings.automation_interval_seconds),
            build_inference_log_sensor(
                settings.inference_log_dir, settings.sensor_interval_seconds
            ),
        ],
    )
