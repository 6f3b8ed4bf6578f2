"""The FastAPI inference service (a later issue). It will import ``finmath_assets.core`` only."""
