"""Where the FinanceMath rows come from: the embedded snapshot or the Hugging Face hub."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import dagster as dg

from finmath_assets.core.sources import (
    EMBEDDED_DATA_DIR,
    LoadedSource,
    load_huggingface,
    load_local,
)
from finmath_assets.settings import Settings


class FinanceMathSourceResource(dg.ConfigurableResource):
    """Loads both splits through ``datasets``. The hub token is read from the settings at load
    time, never stored in resource config (which the Dagster UI displays)."""

    source: Literal["local", "huggingface"] = "local"
    local_data_dir: str | None = None
    hf_dataset: str = "yale-nlp/FinanceMath"
    hf_revision: str | None = None
    cache_dir: str = ".cache/hf"

    @classmethod
    def from_settings(cls, settings: Settings) -> FinanceMathSourceResource:
        return cls(
            source=settings.source,
            local_data_dir=str(settings.local_data_dir) if settings.local_data_dir else None,
            hf_dataset=settings.hf_dataset,
            hf_revision=settings.hf_revision,
            cache_dir=str(settings.hf_cache_dir),
        )

    def load(self) -> LoadedSource:
        cache_dir = Path(self.cache_dir)
        if self.source == "huggingface":
            return load_huggingface(
                self.hf_dataset,
                token=Settings().hf_token_value,
                cache_dir=cache_dir,
                revision=self.hf_revision,
            )
        folder = Path(self.local_data_dir) if self.local_data_dir else EMBEDDED_DATA_DIR
        return load_local(folder, cache_dir=cache_dir)
