"""Declarative automation: the source is re-read on a schedule, and everything downstream
rebuilds when its inputs change, but only once their blocking checks have passed.

Plain ``eager()`` would still request the children of an asset whose blocking check failed (the
bad table is already written when the check runs); ``all_deps_blocking_checks_passed()`` is what
stops it.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from finmath_assets.defs.constants import KEY_PREFIX
from finmath_assets.settings import Settings

SOURCE_ASSET = dg.AssetKey([KEY_PREFIX, "raw_records"])


def downstream_condition() -> dg.AutomationCondition:
    return dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()


def with_automation(
    assets: Sequence[dg.AssetsDefinition], settings: Settings
) -> list[dg.AssetsDefinition]:
    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        condition = (
            dg.AutomationCondition.on_cron(settings.ingest_cron)
            if spec.key == SOURCE_ASSET
            else downstream_condition()
        )
        return spec.replace_attributes(automation_condition=condition)

    return list(dg.map_asset_specs(apply, assets))
