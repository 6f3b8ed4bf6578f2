"""finmath: a Dagster asset graph for financial math question answering.

Importing this package must stay cheap and framework-free: the serving service imports
``finmath_assets.core`` without pulling in Dagster.
"""
