"""The job that evaluates an LLM endpoint (run on demand: `make eval-llm` or the UI)."""

import dagster as dg

from finmath_assets.defs.llm.assets import evaluation

LLM_EVAL_JOB = dg.define_asset_job(
    "llm_eval_job",
    selection=dg.AssetSelection.groups(evaluation.GROUP),
    description="Evaluate the LLM endpoint (FINMATH_LLM_BASE_URL) on the validation split.",
)
