"""Freshness of the market half. Its assets run from sensors and a schedule, not automation
conditions; the prices carry a freshness policy (a weekend plus a holiday by default), alerted on
by ``defs.alerts``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import dagster as dg

from finmath_assets.defs.constants import MARKET_PREFIX
from finmath_assets.settings import Settings

FRESHNESS_ASSETS = (dg.AssetKey([MARKET_PREFIX, "market_prices"]),)


def with_freshness(
    assets: Sequence[dg.AssetsDefinition], settings: Settings
) -> list[dg.AssetsDefinition]:
    policy = dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=settings.market_freshness_fail_hours)
    )

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key in FRESHNESS_ASSETS:
            return spec.replace_attributes(freshness_policy=policy)
        return spec

    return list(dg.map_asset_specs(apply, assets))
