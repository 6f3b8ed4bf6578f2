"""The LLM domain's definitions, wired to the settings."""

import dagster as dg

from finmath_assets.defs.code_versions import load_versioned_assets
from finmath_assets.defs.finmath.automation import with_automation
from finmath_assets.defs.llm import jobs
from finmath_assets.defs.llm.assets import evaluation, solved_examples
from finmath_assets.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    # the few-shot bank is part of the FinanceMath graph and rebuilds with it; the evaluation
    # calls an external endpoint and runs only when asked
    bank = with_automation(load_versioned_assets([solved_examples]), settings)
    return dg.Definitions(
        assets=[*bank, *dg.load_assets_from_modules([evaluation])],
        jobs=[jobs.LLM_EVAL_JOB],
    )
