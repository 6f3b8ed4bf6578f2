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

AUTOMATION_SENSOR = dg.AutomationConditionSensorDefinition(
    "finmath_automation",
    target=SELECTION,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates every asset's automation condition (daily re-ingest, "
    "then eager rebuilds downstream once blocking checks pass).",
)
