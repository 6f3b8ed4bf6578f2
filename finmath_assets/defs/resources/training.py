"""How the answer model is trained (from FINMATH_MODEL_* settings; visible in the Dagster UI)."""

from __future__ import annotations

from typing import Literal

import dagster as dg

from finmath_assets.settings import Settings


class TrainingResource(dg.ConfigurableResource):
    target_transform: Literal["signed_log", "identity"]
    feature_set: Literal["all", "no_embeddings"]
    cv_folds: int
    seed: int

    @classmethod
    def from_settings(cls, settings: Settings) -> TrainingResource:
        return cls(
            target_transform=settings.model_target_transform,
            feature_set=settings.model_feature_set,
            cv_folds=settings.model_cv_folds,
            seed=settings.model_seed,
        )
