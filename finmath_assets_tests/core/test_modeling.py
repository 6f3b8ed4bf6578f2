"""The pure modelling code: transform, determinism, baselines, promotion rule, report schema."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from finmath_assets.core.evaluation import EvaluationReport, build_report, report_rows
from finmath_assets.core.modeling import (
    build_estimator,
    cross_validate,
    data_fingerprint,
    inverse_signed_log,
    regression_metrics,
    select_features,
    signed_log,
)
from finmath_assets.core.registry import decide_promotion


def test_signed_log_round_trips_the_real_target_range() -> None:
    values = np.array([-489849.626, -8184.0, -1.5, 0.0, 0.25, 16.1115, 4929284.716])
    np.testing.assert_allclose(inverse_signed_log(signed_log(values)), values, rtol=1e-12)
    assert signed_log([-8184.0])[0] == pytest.approx(-math.log1p(8184.0))


def test_metrics_on_a_known_case() -> None:
    metrics = regression_metrics(np.array([1.0, -1.0, 10.0]), np.array([2.0, -1.0, 7.0]))
    assert metrics["mae"] == pytest.approx(4 / 3)
    assert metrics["rmse"] == pytest.approx(math.sqrt(10 / 3))
    assert metrics["median_ae"] == pytest.approx(1.0)
    expected_log = (abs(math.log1p(2) - math.log1p(1)) + abs(math.log1p(7) - math.log1p(10))) / 3
    assert metrics["signed_log_mae"] == pytest.approx(expected_log)


def _toy(n: int = 60, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.uniform(0, 100, size=n)})
    target = np.exp(frame["a"] * 2) * frame["b"] * np.where(rng.random(n) < 0.2, -1, 1)
    return frame, target.to_numpy()


def test_cross_validation_is_deterministic() -> None:
    frame, target = _toy()
    first = cross_validate(frame, target, n_folds=5, seed=7)
    second = cross_validate(frame, target, n_folds=5, seed=7)
    assert first.metrics == second.metrics
    np.testing.assert_array_equal(first.model, second.model)
    other = cross_validate(frame, target, n_folds=5, seed=8)
    assert other.metrics != first.metrics  # the seed really drives the folds


def test_baselines_are_fitted_on_training_folds_only() -> None:
    frame, target = _toy()
    cv = cross_validate(frame, target, n_folds=5, seed=1)
    for fold in range(5):
        train = target[cv.fold != fold]
        assert np.all(cv.median_baseline[cv.fold == fold] == np.median(train))
        assert np.allclose(cv.mean_baseline[cv.fold == fold], train.mean())
    assert set(cv.metrics) == {"model", "mean_baseline", "median_baseline"}


def test_identity_and_signed_log_models_predict_in_original_units() -> None:
    frame, _ = _toy(200)
    target = (np.exp(frame["a"]) * frame["b"]).to_numpy()  # positive, spans ~3 decades
    for transform in ("signed_log", "identity"):
        model = build_estimator({"n_estimators": 100}, transform).fit(frame, target)
        predictions = model.predict(frame)
        assert predictions.shape == target.shape
        assert np.corrcoef(predictions, target)[0, 1] > 0.8, transform
        # original units, not log units: the medians agree within a factor of two
        assert 0.5 < np.median(predictions) / np.median(target) < 2.0, transform


def test_bad_configuration_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown target transform 'log2'"):
        build_estimator(transform="log2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown feature set"):
        select_features(["a"], "some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="need at least 5 labelled rows"):
        cross_validate(pd.DataFrame({"a": [1.0, 2.0]}), np.array([1.0, 2.0]))
    assert select_features(["q", "emb_000", "emb_001"], "no_embeddings") == ["q"]


def test_fingerprint_changes_with_data_and_columns() -> None:
    frame, target = _toy()
    base = data_fingerprint(frame, target)
    assert base == data_fingerprint(frame.copy(), target.copy())
    changed = frame.copy()
    changed.iloc[0, 0] += 1e-9
    assert data_fingerprint(changed, target) != base
    assert data_fingerprint(frame[["b", "a"]], target) != base


@pytest.mark.parametrize(
    ("challenger", "champion", "baseline", "promoted", "reason"),
    [
        (2.8, None, 3.0, True, "no champion yet"),
        (2.8, 2.9, 3.0, True, "beats champion"),
        (2.9, 2.9, 3.0, False, "does not beat champion"),
        (2.95, 2.9, 3.0, False, "does not beat champion"),
        (3.1, None, 3.0, False, "does not beat the median baseline"),
        (3.0, 3.5, 3.0, False, "does not beat the median baseline"),
        (float("nan"), None, 3.0, False, "not finite"),
    ],
)
def test_promotion_rule(challenger, champion, baseline, promoted, reason) -> None:
    decision = decide_promotion(challenger, champion, baseline)
    assert decision.promoted is promoted
    assert reason in decision.reason


def test_report_schema_round_trip() -> None:
    frame, target = _toy()
    cv = cross_validate(frame, target, n_folds=5, seed=3)
    predictions = pd.DataFrame(
        {
            "question_id": [f"validation-{i}" for i in range(len(target))],
            "topic": ["Accounting", "Risk Management"] * (len(target) // 2),
            "ground_truth": target,
            "model": cv.model,
            "mean_baseline": cv.mean_baseline,
            "median_baseline": cv.median_baseline,
        }
    )
    report = build_report(
        predictions,
        created_at=pd.Timestamp("2026-01-01", tz="UTC").to_pydatetime(),
        model_name="m",
        model_version="1",
        run_id="r",
        promoted_to_champion=True,
        promotion_reason="x",
        cv_folds=5,
        target_transform="signed_log",
        feature_set="all",
        n_features=2,
        feature_set_ablation={"all": 1.0},
    )
    assert report.overall.model.signed_log_mae == pytest.approx(
        cv.metrics["model"]["signed_log_mae"]
    )
    assert [t.topic for t in report.per_topic] == ["Accounting", "Risk Management"]
    assert EvaluationReport.model_validate_json(report.model_dump_json()) == report
    schema = EvaluationReport.model_json_schema()
    assert set(schema["required"]) <= set(json.loads(report.model_dump_json()))
    rows = report_rows(report)
    assert len(rows) == 3 * 3 and set(rows["predictor"]) == {
        "model",
        "mean_baseline",
        "median_baseline",
    }
