"""Training keys (pure): what decides whether a registered model version is reused."""

from dataclasses import replace

import numpy as np
import pandas as pd

from finmath_assets.core.market.forecasting import BacktestConfig, series_fingerprint
from finmath_assets.core.market.registry import forecaster_training_key
from finmath_assets.core.modeling import (
    DEFAULT_PARAMS,
    DETERMINISTIC_PARAMS,
    data_fingerprint,
    effective_params,
)
from finmath_assets.core.registry import answer_model_training_key, training_key


def _answer_key(**overrides: object) -> str:
    parts: dict = {
        "data_fingerprint": "d" * 64,
        "row_ids": ["q1\x1ftopic", "q2\x1ftopic"],
        "feature_columns": ["a", "emb_000"],
        "params": effective_params({"n_estimators": 50}, 42),
        "target_transform": "signed_log",
        "feature_set": "all",
        "cv_folds": 5,
        "seed": 42,
        "embedding_model_id": "sentence-transformers/all-MiniLM-L6-v2@onnx",
    }
    return answer_model_training_key(**(parts | overrides))


def test_the_answer_model_key_is_stable_and_changes_with_every_input() -> None:
    key = _answer_key()
    assert len(key) == 64 and key == _answer_key()
    changed = {
        "data_fingerprint": "e" * 64,
        "row_ids": ["q1\x1ftopic", "q3\x1ftopic"],
        "feature_columns": ["a"],
        "params": effective_params({"n_estimators": 51}, 42),
        "target_transform": "identity",
        "feature_set": "no_embeddings",
        "cv_folds": 4,
        "seed": 7,
        "embedding_model_id": "another-model",
    }
    keys = {name: _answer_key(**{name: value}) for name, value in changed.items()}
    assert key not in keys.values() and len(set(keys.values())) == len(changed), keys


def test_effective_params_are_defaults_overrides_determinism_and_seed() -> None:
    params = effective_params({"n_estimators": 7}, 3)
    assert params == {
        **DEFAULT_PARAMS,
        "n_estimators": 7,
        **DETERMINISTIC_PARAMS,
        "random_state": 3,
    }
    # an override equal to the default is the same training
    default = DEFAULT_PARAMS["n_estimators"]
    assert effective_params({"n_estimators": default}, 3) == effective_params({}, 3)


def test_a_key_does_not_depend_on_key_order_or_numpy_scalars() -> None:
    assert training_key({"a": 1, "b": [1.5, "x"]}) == training_key({"b": [1.5, "x"], "a": 1})
    assert training_key({"a": np.int64(1), "b": np.float64(0.5)}) == training_key(
        {"a": 1, "b": 0.5}
    )
    assert training_key({"a": 1}) != training_key({"a": 2})


def test_the_data_fingerprint_sees_one_changed_value() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "emb_000": [0.1, 0.2, 0.3]})
    y = np.array([1.0, 2.0, 3.0])
    edited = frame.copy()
    edited.loc[1, "emb_000"] = 0.2000001
    assert data_fingerprint(frame, y) == data_fingerprint(frame.copy(), y.copy())
    assert data_fingerprint(frame, y) != data_fingerprint(edited, y)


def _series(days: int = 30) -> pd.DataFrame:
    dates = pd.bdate_range("2012-01-02", periods=days)
    return pd.DataFrame(
        {
            "unique_id": ["AAPL"] * days + ["IBM"] * days,
            "ds": list(dates) * 2,
            "y": np.linspace(10.0, 12.0, 2 * days),
        }
    )


def test_the_forecaster_key_follows_the_series_the_settings_and_the_target() -> None:
    series, config = _series(), BacktestConfig(windows=2)
    key = forecaster_training_key(series, config, "log_volume")
    assert key == forecaster_training_key(series.copy(), BacktestConfig(windows=2), "log_volume")
    one_more_day = _series(31)
    edited = series.copy()
    edited.loc[5, "y"] += 1e-9
    others = [
        forecaster_training_key(one_more_day, config, "log_volume"),
        forecaster_training_key(edited, config, "log_volume"),
        forecaster_training_key(series, replace(config, num_leaves=15), "log_volume"),
        forecaster_training_key(series, replace(config, windows=3), "log_volume"),
        forecaster_training_key(series, config, "log_return"),
    ]
    assert key not in others and len(set(others)) == len(others)


def test_the_series_fingerprint_covers_ids_days_and_values() -> None:
    series = _series()
    renamed = series.assign(unique_id=series["unique_id"].replace("IBM", "MSFT"))
    shifted = series.assign(ds=series["ds"] + pd.Timedelta(days=1))
    fingerprints = {series_fingerprint(f) for f in (series, renamed, shifted)}
    assert len(fingerprints) == 3
    assert series_fingerprint(series) == series_fingerprint(series.copy())
