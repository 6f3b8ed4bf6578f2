"""Declarative automation and freshness: the source is re-read on a schedule, everything
downstream rebuilds when its inputs change, but only once their blocking checks have passed, and
the source and the model carry freshness policies (alerted on by ``defs.alerts``).
The LLM domain's ``solved_examples`` (built from this graph) follows the same rule.

Plain ``eager()`` would still request the children of an asset whose blocking check failed (the
bad table is already written when the check runs); ``all_deps_blocking_checks_passed()`` is what
stops it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import dagster as dg

from finmath_assets.defs.constants import KEY_PREFIX
from finmath_assets.settings import Settings

SOURCE_ASSET = dg.AssetKey([KEY_PREFIX, "raw_records"])
FRESHNESS_ASSETS = tuple(
    dg.AssetKey([KEY_PREFIX, name]) for name in ("raw_records", "answer_model", "drift_report")
)


def downstream_condition() -> dg.AutomationCondition:
    """``eager()`` on change, not on activity: a dependency counts as updated only when its data
    version changed (a re-ingest of identical records changes none), and an asset whose own code
    version changed is rebuilt; still only once its dependencies' blocking checks pass."""
    return (
        dg.AutomationCondition.eager()
        .replace("newly_updated", dg.AutomationCondition.data_version_changed())
        .replace(
            "newly_missing",
            dg.AutomationCondition.newly_missing() | dg.AutomationCondition.code_version_changed(),
        )
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
    )


def with_automation(
    assets: Sequence[dg.AssetsDefinition], settings: Settings
) -> list[dg.AssetsDefinition]:
    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        condition = (
            dg.AutomationCondition.on_cron(settings.ingest_cron)
            if spec.key == SOURCE_ASSET
            else downstream_condition()
        )
        freshness = (
            dg.FreshnessPolicy.time_window(
                fail_window=timedelta(hours=settings.freshness_fail_hours),
                warn_window=timedelta(hours=settings.freshness_warn_hours),
            )
            if spec.key in FRESHNESS_ASSETS
            else None
        )
        return spec.replace_attributes(automation_condition=condition, freshness_policy=freshness)

    return list(dg.map_asset_specs(apply, assets))
