"""The FinanceMath job and the automation sensor that keeps the graph up to date."""

import dagster as dg

from finmath_assets.defs.constants import KEY_PREFIX

# everything under `finmath/` (the LLM domain's solved_examples included)
SELECTION = dg.AssetSelection.key_prefixes(KEY_PREFIX)

FINMATH_JOB = dg.define_asset_job(
    "finmath_job",
    selection=SELECTION,
    description="Materialise the FinanceMath graph: raw records to an evaluated model.",
)


def build_automation_sensor(interval_seconds: int) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "finmath_automation",
        target=SELECTION,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval_seconds,
        description="Evaluates every asset's automation condition (daily re-ingest, "
        "then eager rebuilds downstream once blocking checks pass).",
    )
