"""Framework-free domain code shared by the Dagster assets and the serving service.

Nothing under ``finmath_assets.core`` may import ``dagster`` or ``fastapi``: the same functions
build features at training time (assets) and at request time (service), so a change here changes
both sides at once. A test enforces the rule.
"""
