"""Where the FinanceMath rows come from: the embedded snapshot or the Hugging Face hub."""

# no `from __future__ import annotations`: Dagster must see the ResourceDependency type

from pathlib import Path
from typing import Literal, Self

import dagster as dg

from finmath_assets.core.sources import (
    EMBEDDED_DATA_DIR,
    LoadedSource,
    load_huggingface,
    load_local,
)
from finmath_assets.defs.resources.secrets import secret
from finmath_assets.settings import Settings


class FinanceMathSourceResource(dg.ConfigurableResource):
    """Loads both splits through ``datasets``. The hub token comes from the settings as a
    secret (see ``secrets.py``), never as resource config (which the Dagster UI displays)."""

    source: Literal["local", "huggingface"]
    local_data_dir: str | None
    hf_dataset: str
    hf_revision: str | None
    cache_dir: str
    hf_token: dg.ResourceDependency[str | None]

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            source=settings.source,
            local_data_dir=str(settings.local_data_dir) if settings.local_data_dir else None,
            hf_dataset=settings.hf_dataset,
            hf_revision=settings.hf_revision,
            cache_dir=str(settings.hf_cache_dir),
            hf_token=secret(
                settings.hf_token_value, "Hub token (FINMATH_HF_TOKEN, else HF_TOKEN): not shown"
            ),
        )

    def load(self) -> LoadedSource:
        cache_dir = Path(self.cache_dir)
        if self.source == "huggingface":
            return load_huggingface(
                self.hf_dataset,
                token=self.hf_token,
                cache_dir=cache_dir,
                revision=self.hf_revision,
            )
        folder = Path(self.local_data_dir) if self.local_data_dir else EMBEDDED_DATA_DIR
        return load_local(folder, cache_dir=cache_dir)
