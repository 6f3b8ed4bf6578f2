"""Thresholds of the asset checks (from FINMATH_CHECK_* settings; visible in the Dagster UI)."""

from __future__ import annotations

import dagster as dg

from finmath_assets.settings import Settings


class QualityResource(dg.ConfigurableResource):
    max_reject_rate: float
    expected_labelled: int
    min_numeric_share: float

    @classmethod
    def from_settings(cls, settings: Settings) -> QualityResource:
        return cls(
            max_reject_rate=settings.check_max_reject_rate,
            expected_labelled=settings.check_expected_labelled,
            min_numeric_share=settings.check_min_numeric_share,
        )
