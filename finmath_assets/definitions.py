"""The Dagster code location: ``dagster ... -m finmath_assets.definitions``.

Each domain under ``defs/`` builds its own assets, checks, jobs and sensors from the settings;
the shared resources and the alert sensors that watch every domain are merged in here.
"""

from __future__ import annotations

import dagster as dg

from finmath_assets.defs import alerts, executors
from finmath_assets.defs.finmath import definitions as finmath
from finmath_assets.defs.llm import definitions as llm
from finmath_assets.defs.market import definitions as market
from finmath_assets.defs.resources import definitions as shared_resources
from finmath_assets.settings import Settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """All definitions, wired to ``settings`` (default: read from the environment)."""
    settings = settings or Settings()
    settings.home.mkdir(parents=True, exist_ok=True)  # DuckDB creates the file, not its folder
    domains = [finmath.build_defs(settings), market.build_defs(settings), llm.build_defs(settings)]
    return dg.Definitions.merge(
        *domains,
        alerts.build_defs(domains, settings.alert_interval_seconds),
        shared_resources.build_defs(settings),
        dg.Definitions(executor=executors.build_executor(settings.executor)),
    )


defs = build_definitions()
