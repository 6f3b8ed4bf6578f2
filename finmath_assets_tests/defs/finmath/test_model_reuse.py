"""Reuse of the answer model: training again on unchanged features registers nothing new.

Runs only the training step (`answer_model` + `cv_predictions`) against a private copy of the
session's materialisation (warehouse and MLflow store), so the session's version 1 is the first
training and these runs are the second and later ones.
"""

import dagster as dg
import duckdb
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from finmath_assets.core.registry import (
    CHAMPION,
    CV_PREDICTIONS_ARTIFACT,
    TRAINING_KEY_TAG,
    version_by_alias,
)
from finmath_assets.settings import Settings
from finmath_assets.summary import _print_model
from finmath_assets_tests.conftest import Materialized, train_step

pytestmark = pytest.mark.slow  # materialises the training step with Dagster

MODEL = "finmath-answer-regressor"


def _versions(client: MlflowClient) -> list[str]:
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))


def test_unchanged_training_reuses_the_version_and_a_new_parameter_trains_one(
    materialized_real: Materialized,
    trained_copy: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FINMATH_HOME", str(trained_copy.home))
    uri = trained_copy.mlflow_tracking_uri_value
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    first_meta = materialized_real.metadata("answer_model")
    with duckdb.connect(str(materialized_real.settings.warehouse_path), read_only=True) as conn:
        first_cv = conn.execute("SELECT * FROM finmath.cv_predictions").fetchdf()
        first_row = conn.execute("SELECT * FROM finmath.answer_model").fetchdf().iloc[0]
    assert first_meta["reused"] is False and not first_row["reused"]
    assert _versions(client) == ["1"]
    key = client.get_model_version(MODEL, "1").tags[TRAINING_KEY_TAG]
    assert key == first_meta["training_key"] and len(key) == 64
    runs_before = len(client.search_runs([client.get_experiment_by_name("finmath").experiment_id]))

    with dg.instance_for_test() as instance:
        # the same features and settings: version 1 is reused, nothing is trained or logged
        meta, row, cv = train_step(trained_copy, instance)
        assert meta["reused"] is True and meta["model_version"] == "1"
        assert meta["training_key"] == key and meta["promoted"] is False
        assert _versions(client) == ["1"]
        pd.testing.assert_frame_equal(cv, first_cv)
        reused = row.iloc[0]
        assert bool(reused["reused"]) and not bool(reused["promoted"])
        assert reused["promotion_reason"] == (
            "reused v1: training data, features and parameters unchanged"
        )
        assert reused["run_id"] == first_row["run_id"] and reused["champion_version"] == "1"
        for column in ("cv_signed_log_mae", "cv_median_baseline_signed_log_mae"):
            assert reused[column] == first_row[column], column
        assert reused["champion_metric_before"] == first_row["cv_signed_log_mae"]
        assert reused["feature_set_ablation"] == first_row["feature_set_ablation"]
        assert list(row.columns) == list(first_row.index)

        # the summary says so; a warehouse from before reuse (no column) reads as trained
        _print_model(trained_copy)
        assert "finmath-answer-regressor v1 reused (nothing changed" in capsys.readouterr().out
        with duckdb.connect(str(trained_copy.warehouse_path)) as conn:
            conn.execute("ALTER TABLE finmath.answer_model DROP COLUMN reused")
        _print_model(trained_copy)
        assert "finmath-answer-regressor v1 (promoted to champion" in capsys.readouterr().out

        # another parameter: a new training and version (not promoted: fewer trees)
        meta, row, cv = train_step(trained_copy, instance, n_estimators=20)
        assert meta["reused"] is False and meta["model_version"] == "2"
        assert meta["training_key"] != key and not bool(row["reused"].iloc[0])
        assert _versions(client) == ["1", "2"]
        assert str(version_by_alias(client, MODEL, CHAMPION).version) == "1"
        new_run = row["run_id"].iloc[0]
        artifacts = {a.path for a in client.list_artifacts(new_run)}
        assert CV_PREDICTIONS_ARTIFACT in artifacts
        assert client.get_run(new_run).info.artifact_uri.startswith(
            (trained_copy.home / "mlartifacts").as_uri()
        )
        # and that parameter again: version 2 is reused, with the out-of-fold frame it logged
        again, _, cv_again = train_step(trained_copy, instance, n_estimators=20)
        assert again["reused"] is True and again["model_version"] == "2"
        pd.testing.assert_frame_equal(cv_again, cv)
        assert _versions(client) == ["1", "2"]
    experiment = client.get_experiment_by_name("finmath").experiment_id
    assert len(client.search_runs([experiment])) == runs_before + 1  # only version 2's run
