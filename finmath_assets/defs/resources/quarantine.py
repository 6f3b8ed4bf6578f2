"""Limits of the quarantine checks: how many rejected rows each domain tolerates."""

from __future__ import annotations

import dagster as dg

from finmath_assets.settings import Settings


class QuarantineLimitsResource(dg.ConfigurableResource):
    """Limits of the quarantine checks (FINMATH_CHECK_MAX_REJECTED_* / _TRANSACTION_* settings)."""

    max_rejected_records: int
    max_rejected_bars_per_day: int
    max_transaction_reject_share: float

    @classmethod
    def from_settings(cls, settings: Settings) -> QuarantineLimitsResource:
        return cls(
            max_rejected_records=settings.check_max_rejected_records,
            max_rejected_bars_per_day=settings.check_max_rejected_bars_per_day,
            max_transaction_reject_share=settings.check_max_transaction_reject_share,
        )
