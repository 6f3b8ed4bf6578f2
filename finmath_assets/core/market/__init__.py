"""Market data: daily price bars (validation, quarantine, drop-folder files), their features,
and the forecaster. Pure functions, like the rest of ``core``: no Dagster, no FastAPI."""
