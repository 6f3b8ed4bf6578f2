"""Where the monitoring assets read the inference log and write their reports
(FINMATH_DRIFT_* settings; visible in the Dagster UI)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from finmath_assets.settings import DRIFT_SUMMARY_FILE, Settings


class MonitoringResource(dg.ConfigurableResource):
    inference_log_dir: str
    min_rows: int
    max_drift_share: float
    drift_html: str = "reports/drift_report.html"
    regression_html: str = "reports/regression_quality_report.html"
    drift_json: str = DRIFT_SUMMARY_FILE

    @classmethod
    def from_settings(cls, settings: Settings) -> MonitoringResource:
        return cls(
            inference_log_dir=str(settings.inference_log_dir),
            min_rows=settings.drift_min_rows,
            max_drift_share=settings.drift_max_share,
        )

    @property
    def inference_log_path(self) -> Path:
        return Path(self.inference_log_dir)
