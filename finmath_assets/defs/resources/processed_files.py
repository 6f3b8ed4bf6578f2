"""Where file exports (parquet, reports) are written: FINMATH_HOME/processed."""

from __future__ import annotations

import os
from collections.abc import Callable
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

    def _write_atomically(self, name: str, write: Callable[[Path], None]) -> Path:
        """Write to a side file, then rename: readers never see a half-written file."""
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        write(partial)
        os.replace(partial, path)
        return path

    def write_with(self, name: str, write: Callable[[Path], object]) -> Path:
        """Write ``name`` with ``write(path)`` (e.g. a plot), atomically."""
        return self._write_atomically(name, lambda p: write(p) and None)

    def write_parquet(self, frame: pd.DataFrame, name: str) -> Path:
        return self._write_atomically(name, lambda p: frame.to_parquet(p, index=False))

    def write_text(self, text: str, name: str) -> Path:
        return self._write_atomically(name, lambda p: p.write_text(text, encoding="utf-8"))
