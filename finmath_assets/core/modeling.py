"""The answer model: target transform, deterministic LightGBM, cross-validation, baselines.

Framework-free like the rest of ``core``: the Dagster asset trains with it, the service only
needs the fitted estimator (a scikit-learn ``TransformedTargetRegressor`` around LightGBM, so the
registered model predicts in the original units).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from finmath_assets.core.features import EMBEDDING_PREFIX

if TYPE_CHECKING:  # lightgbm and scikit-learn take ~1.7 s to import: only when training
    from lightgbm import LGBMRegressor
    from sklearn.compose import TransformedTargetRegressor

TargetTransform = Literal["signed_log", "identity"]
FeatureSet = Literal["all", "no_embeddings"]
FEATURE_SETS: tuple[str, ...] = ("all", "no_embeddings")
LgbmParams = Mapping[str, float | int | str]  # LGBMRegressor keyword arguments

DEFAULT_PARAMS: dict[str, float | int | str] = {
    "objective": "huber",  # robust to the few answers in the millions
    "n_estimators": 200,
    "learning_rate": 0.03,
    "num_leaves": 7,
    "min_child_samples": 10,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.5,
    "reg_lambda": 1.0,
}
# Fixed for reproducibility: same data + same params -> same metrics, on any machine.
DETERMINISTIC_PARAMS: dict[str, int | bool] = {
    "deterministic": True,
    "force_row_wise": True,
    "n_jobs": 2,
    "verbose": -1,
}


def signed_log(values: np.ndarray | Sequence[float]) -> np.ndarray:
    """sign(y) * log1p(|y|): compresses answers spanning -5e5 ... 5e6 while keeping the sign."""
    array = np.asarray(values, dtype=np.float64)
    return np.sign(array) * np.log1p(np.abs(array))


def inverse_signed_log(values: np.ndarray | Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return np.sign(array) * np.expm1(np.abs(array))


def select_features(columns: Sequence[str], feature_set: FeatureSet) -> list[str]:
    if feature_set == "all":
        return list(columns)
    if feature_set == "no_embeddings":
        return [c for c in columns if not c.startswith(EMBEDDING_PREFIX)]
    raise ValueError(f"unknown feature set {feature_set!r}; use 'all' or 'no_embeddings'")


def effective_params(params: LgbmParams | None = None, seed: int = 42) -> dict[str, object]:
    """Every keyword argument :func:`build_estimator` gives ``LGBMRegressor``: the defaults, the
    overrides in ``params``, the determinism settings and the seed."""
    return {**DEFAULT_PARAMS, **(params or {}), **DETERMINISTIC_PARAMS, "random_state": seed}


def build_estimator(
    params: LgbmParams | None = None, transform: TargetTransform = "signed_log", seed: int = 42
) -> TransformedTargetRegressor | LGBMRegressor:
    from lightgbm import LGBMRegressor
    from sklearn.compose import TransformedTargetRegressor

    # LGBMRegressor's keyword arguments have precise types that a params mapping cannot carry
    regressor = LGBMRegressor(**effective_params(params, seed))  # type: ignore[arg-type]
    if transform == "identity":
        return regressor
    if transform != "signed_log":
        raise ValueError(f"unknown target transform {transform!r}; use 'signed_log' or 'identity'")
    return TransformedTargetRegressor(
        regressor=regressor, func=signed_log, inverse_func=inverse_signed_log, check_inverse=False
    )


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, median absolute error (original units) and MAE in signed-log space."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    errors = y_pred - y_true
    return {
        "mae": float(np.mean(np.abs(errors))),
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "median_ae": float(np.median(np.abs(errors))),
        "signed_log_mae": float(np.mean(np.abs(signed_log(y_pred) - signed_log(y_true)))),
    }


@dataclass
class CrossValidation:
    """Out-of-fold predictions of the model and of the two constant baselines."""

    fold: np.ndarray
    model: np.ndarray
    mean_baseline: np.ndarray
    median_baseline: np.ndarray
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)


def cross_validate(
    features: pd.DataFrame,
    target: np.ndarray,
    *,
    params: LgbmParams | None = None,
    transform: TargetTransform = "signed_log",
    n_folds: int = 5,
    seed: int = 42,
) -> CrossValidation:
    """K-fold CV with a fixed shuffle; baselines are fitted on each training fold too, so the
    comparison is like for like (the median of the training answers, not of all answers)."""
    from sklearn.model_selection import KFold

    if len(features) < n_folds:
        raise ValueError(
            f"need at least {n_folds} labelled rows for {n_folds}-fold CV, got {len(features)}"
        )
    target = np.asarray(target, dtype=np.float64)
    folds = np.zeros(len(target), dtype=np.int64)
    model = np.zeros(len(target))
    mean_baseline = np.zeros(len(target))
    median_baseline = np.zeros(len(target))
    splitter = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for index, (train, test) in enumerate(splitter.split(features)):
        estimator = build_estimator(params, transform, seed)
        estimator.fit(features.iloc[train], target[train])
        model[test] = estimator.predict(features.iloc[test])
        folds[test] = index
        mean_baseline[test] = target[train].mean()
        median_baseline[test] = np.median(target[train])
    result = CrossValidation(folds, model, mean_baseline, median_baseline)
    result.metrics = {
        "model": regression_metrics(target, model),
        "mean_baseline": regression_metrics(target, mean_baseline),
        "median_baseline": regression_metrics(target, median_baseline),
    }
    return result


def data_fingerprint(features: pd.DataFrame, target: np.ndarray) -> str:
    """SHA-256 of the training matrix and target (column names, order and values)."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(features.columns).encode())
    digest.update(np.ascontiguousarray(features.to_numpy(dtype=np.float64)).tobytes())
    digest.update(np.ascontiguousarray(np.asarray(target, dtype=np.float64)).tobytes())
    return digest.hexdigest()
