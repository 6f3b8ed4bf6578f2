"""The answer model assets against a real MLflow sqlite store and the real features."""

import json
from pathlib import Path

import dagster as dg
import duckdb
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from finmath_assets.core.evaluation import EvaluationReport
from finmath_assets.core.modeling import build_estimator
from finmath_assets.core.registry import CHALLENGER, CHAMPION, load_model, version_by_alias
from finmath_assets.defs.resources import MlflowTrackingResource
from finmath_assets.settings import Settings
from finmath_assets_tests.conftest import Materialized, train_step

pytestmark = pytest.mark.slow  # reads the real materialisation, retrains and registers

MODEL = "finmath-answer-regressor"


def _frame(materialized: Materialized, table: str) -> pd.DataFrame:
    with duckdb.connect(str(materialized.settings.warehouse_path), read_only=True) as conn:
        return conn.execute(f"SELECT * FROM finmath.{table}").fetchdf()


def _client(materialized: Materialized) -> MlflowClient:
    uri = materialized.settings.mlflow_tracking_uri_value
    return MlflowClient(tracking_uri=uri, registry_uri=uri)  # never the process-global registry


def test_training_run_is_finished_and_complete(materialized_real: Materialized) -> None:
    row = _frame(materialized_real, "answer_model").iloc[0]
    run = _client(materialized_real).get_run(row["run_id"])
    assert run.info.status == "FINISHED"
    assert (
        run.info.experiment_id
        == _client(materialized_real).get_experiment_by_name("finmath").experiment_id
    )
    metrics = run.data.metrics
    for name in (
        "cv_signed_log_mae",
        "cv_mae",
        "cv_rmse",
        "cv_median_ae",
        "cv_median_baseline_signed_log_mae",
        "cv_mean_baseline_signed_log_mae",
        "cv_ablation_no_embeddings_signed_log_mae",
    ):
        assert np.isfinite(metrics[name]), name
    tags = run.data.tags
    assert tags["dagster.run_id"] == materialized_real.result.run_id
    assert tags["finmath.embedding_model_id"].startswith("sentence-transformers/all-MiniLM-L6-v2")
    assert len(tags["finmath.data_fingerprint"]) == 64
    assert tags["finmath.promoted"] == "true"
    assert run.data.params["target_transform"] == "signed_log"
    artifacts = {a.path for a in _client(materialized_real).list_artifacts(row["run_id"])}
    assert {"feature_columns.json", "evaluation_report.json"} <= artifacts
    artifact_root = Path(run.info.artifact_uri.removeprefix("file://"))
    assert artifact_root.is_relative_to(materialized_real.home / "mlartifacts")


def test_model_beats_the_median_baseline_and_is_champion(materialized_real: Materialized) -> None:
    row = _frame(materialized_real, "answer_model").iloc[0]
    assert row["promoted"] and row["version"] == "1"
    assert row["cv_signed_log_mae"] < row["cv_median_baseline_signed_log_mae"]
    champion = version_by_alias(_client(materialized_real), MODEL, CHAMPION)
    challenger = version_by_alias(_client(materialized_real), MODEL, CHALLENGER)
    assert str(champion.version) == str(challenger.version) == "1"


def test_champion_predicts_exactly_like_the_in_memory_model(
    materialized_real: Materialized, tmp_path: Path
) -> None:
    champion = load_model(MODEL, tracking_uri=materialized_real.settings.mlflow_tracking_uri_value)
    features = _frame(materialized_real, "features")
    labelled = features[features["ground_truth"].notna()]
    X = labelled[champion.feature_columns]
    in_memory = build_estimator().fit(X, labelled["ground_truth"].to_numpy())
    np.testing.assert_array_equal(np.asarray(champion.predict(labelled)), in_memory.predict(X))
    assert champion.embedding_model_id.startswith("sentence-transformers/all-MiniLM-L6-v2")
    local = _client(materialized_real).download_artifacts(
        champion.run_id, "feature_columns.json", str(tmp_path)
    )
    assert champion.feature_columns == json.loads(Path(local).read_text())


def test_batch_predictions_cover_the_unlabelled_questions(materialized_real: Materialized) -> None:
    batch = _frame(materialized_real, "batch_predictions")
    assert len(batch) == 1000 and batch["question_id"].str.startswith("test-").all()
    assert batch["question_id"].is_unique and np.isfinite(batch["prediction"]).all()
    assert set(batch["model_version"]) == {"1"}
    champion = load_model(MODEL, tracking_uri=materialized_real.settings.mlflow_tracking_uri_value)
    features = _frame(materialized_real, "features").set_index("question_id")
    expected = champion.predict(features.loc[batch["question_id"]])
    np.testing.assert_array_equal(batch["prediction"].to_numpy(), np.asarray(expected))


def test_evaluation_report_json_and_history(
    materialized_real: Materialized, tmp_path: Path
) -> None:
    path = materialized_real.settings.processed_dir / "evaluation_report.json"
    report = EvaluationReport.model_validate_json(path.read_text())
    assert report.n_labelled == 200 and report.model_version == "1"
    assert report.beats_median_baseline and report.promoted_to_champion
    assert report.overall.model.signed_log_mae < report.overall.median_baseline.signed_log_mae
    assert report.overall.median_baseline.signed_log_mae == pytest.approx(3.08, abs=0.05)
    assert sum(t.n for t in report.per_topic) == 200 and len(report.per_topic) == 7
    assert set(report.feature_set_ablation) == {"all", "no_embeddings"}
    local = _client(materialized_real).download_artifacts(
        report.run_id, "evaluation_report.json", str(tmp_path)
    )
    logged = json.loads(Path(local).read_text())
    assert logged == json.loads(report.model_dump_json())
    history = _frame(materialized_real, "model_evaluations")
    assert set(history["run_id"]) == {report.run_id} and len(history) == 8 * 3
    markdown = materialized_real.metadata("evaluation_report")["report"]
    assert "| median_baseline |" in markdown and "promoted to champion" in markdown


def test_worse_challenger_does_not_take_the_champion_alias(trained_copy: Settings) -> None:
    """A one-tree challenger, trained on the session's features, against its champion (v1)."""
    with dg.instance_for_test() as instance:
        meta, _, _ = train_step(trained_copy, instance, n_estimators=1)
    uri = trained_copy.mlflow_tracking_uri_value
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert str(version_by_alias(client, MODEL, CHAMPION).version) == "1"
    assert str(version_by_alias(client, MODEL, CHALLENGER).version) == "2"
    assert meta["promoted"] is False and meta["model_version"] == "2"
    tags = client.get_model_version(MODEL, "2").tags
    assert (
        tags["finmath.promoted"] == "false" and "does not beat" in tags["finmath.promotion_reason"]
    )


def test_failed_tracking_run_ends_failed(tmp_path: Path) -> None:
    tracking = MlflowTrackingResource(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        registry_uri=None,
        experiment_name="finmath",
        artifact_location=(tmp_path / "artifacts").as_uri(),
        model_name="finmath-answer-regressor",
    )
    with pytest.raises(RuntimeError, match="boom"), tracking.start_run("r", {"k": "v"}) as run:
        run_id = run.info.run_id
        raise RuntimeError("boom")
    assert tracking.client().get_run(run_id).info.status == "FAILED"
    assert mlflow.active_run() is None
