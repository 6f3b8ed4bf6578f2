"""Where file exports (parquet, reports) are written: FINMATH_HOME/processed."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pandas as pd

from finmath_assets.settings import Settings

FEATURES_PARQUET = "finance_math_features.parquet"


class ProcessedFilesResource(dg.ConfigurableResource):
    directory: str

    @classmethod
    def from_settings(cls, settings: Settings) -> ProcessedFilesResource:
        return cls(directory=str(settings.processed_dir))

    def path(self, name: str) -> Path:
        return Path(self.directory) / name

    def write_parquet(self, frame: pd.DataFrame, name: str) -> Path:
        """Write atomically: readers never see a half-written file."""
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        frame.to_parquet(partial, index=False)
        os.replace(partial, path)
        return path
