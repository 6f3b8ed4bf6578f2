"""The FastAPI inference service (`uvicorn serving.app:app`). It imports `finmath_assets.core`
and `finmath_assets.settings` only, never the Dagster definitions or the warehouse."""
