"""Dagster definitions by domain: ``finmath/`` (the FinanceMath graph), ``market/`` (prices,
transactions, forecasters) and ``llm/`` (the few-shot bank and the LLM evaluation), each with its
assets, checks, jobs and sensors; ``resources/`` and ``alerts.py`` are shared by all three."""
