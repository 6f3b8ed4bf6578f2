"""The one register-and-promote path (core.registry) against a real local MLflow store (sqlite
and an artefact folder in ``tmp_path``; this MLflow refuses the plain file store)."""

from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from finmath_assets.core.modeling import build_estimator, cross_validate
from finmath_assets.core.registry import (
    CHALLENGER,
    CHAMPION,
    CV_PREDICTIONS_ARTIFACT,
    FEATURE_COLUMNS_ARTIFACT,
    PRIMARY_METRIC,
    TRAINING_KEY_TAG,
    PromotionResult,
    decide_promotion,
    find_reusable_version,
    load_model,
    log_answer_model,
    log_frame_artifact,
    promote_challenger,
    read_frame_artifact,
    version_by_alias,
    version_by_training_key,
)
from finmath_assets.core.registry import (
    EMBEDDING_MODEL_TAG as EMBEDDING,
)

pytestmark = pytest.mark.slow  # registers model versions
NAME = "test-model"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[MlflowClient, str, str]]:
    """A store in ``tmp_path``: its client, URI and an experiment; the process-global tracking
    and registry URIs point at it during the test and are restored after."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = client.create_experiment(
        "registry-tests", artifact_location=(tmp_path / "mlartifacts").as_uri()
    )
    try:
        yield client, uri, experiment_id
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


def _register(
    client: MlflowClient, experiment_id: str, metric: float, embeds: str | None = None
) -> str:
    """A run logging ``PRIMARY_METRIC`` (and tagged with the embedding model id ``embeds``) and a
    model version of ``NAME`` from it."""
    if not client.search_registered_models(f"name = '{NAME}'"):
        client.create_registered_model(NAME)
    run = client.create_run(experiment_id, tags={} if embeds is None else {EMBEDDING: embeds})
    client.log_metric(run.info.run_id, PRIMARY_METRIC, metric)
    client.set_terminated(run.info.run_id)
    version = client.create_model_version(
        NAME, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    return str(version.version)


def _aliases(client: MlflowClient) -> dict[str, str | None]:
    return {
        alias: None if (v := version_by_alias(client, NAME, alias)) is None else str(v.version)
        for alias in (CHAMPION, CHALLENGER)
    }


def test_first_version_is_champion_a_worse_one_is_not_a_better_one_is(store) -> None:
    client, _, experiment_id = store
    baseline = 3.0

    first = promote_challenger(
        client,
        NAME,
        _register(client, experiment_id, 2.5),
        challenger_metric=2.5,
        baseline_metric=baseline,
    )
    assert first.promoted and first.version == "1" and first.champion_version == "1"
    assert first.champion_metric is None and "no champion yet" in first.reason
    assert _aliases(client) == {CHAMPION: "1", CHALLENGER: "1"}

    worse = promote_challenger(
        client,
        NAME,
        _register(client, experiment_id, 2.7),
        challenger_metric=2.7,
        baseline_metric=baseline,
    )
    assert not worse.promoted and worse.version == "2"
    assert worse.champion_metric == pytest.approx(2.5) and worse.champion_version == "1"
    assert worse.reason == "challenger 2.7000 does not beat champion 2.5000"
    assert _aliases(client) == {CHAMPION: "1", CHALLENGER: "2"}

    better = promote_challenger(
        client,
        NAME,
        _register(client, experiment_id, 2.1),
        challenger_metric=2.1,
        baseline_metric=baseline,
    )
    assert better.promoted and better.champion_version == "3"
    assert better.champion_metric == pytest.approx(2.5)
    assert better.reason == "challenger 2.1000 beats champion 2.5000"
    assert _aliases(client) == {CHAMPION: "3", CHALLENGER: "3"}

    # the decision is on the model version and on its run
    version = client.get_model_version(NAME, "2")
    expected = {
        "finmath.promoted": "false",
        "finmath.promotion_reason": worse.reason,
        "finmath.challenger_metric": "2.700000",
        "finmath.champion_metric": "2.500000",
    }
    assert expected.items() <= version.tags.items()
    assert expected.items() <= client.get_run(version.run_id).data.tags.items()
    assert client.get_model_version(NAME, "1").tags["finmath.champion_metric"] == "none"


def test_a_champion_on_other_embeddings_is_no_bar_but_the_baseline_still_is(store) -> None:
    """After a change of embedding backend the old champion cannot be served any more (the
    service refuses a model trained on other vectors): a challenger on the new embeddings
    replaces it if it beats the baseline, even when its CV is a little worse."""
    client, _, experiment_id = store
    old, new = "minilm+onnx-fp32", "minilm+openvino-bf16"

    def promote(metric: float, embeds: str) -> PromotionResult:
        """A version trained on ``embeds`` with CV ``metric``, through the gate (baseline 3.0)."""
        version = _register(client, experiment_id, metric, embeds)
        return promote_challenger(
            client,
            NAME,
            version,
            challenger_metric=metric,
            baseline_metric=3.0,
            embedding_model_id=embeds,
        )

    promote(2.50, old)
    assert not promote(2.51, old).promoted  # same embeddings: the champion is the bar as before
    switched = promote(2.51, new)
    assert switched.promoted and switched.champion_version == "3"
    assert switched.champion_metric == pytest.approx(2.50)
    assert switched.reason == (
        f"the champion (v1) was trained on {old} embeddings, which this deployment no longer "
        "computes; the challenger beats the median baseline"
    )
    assert _aliases(client) == {CHAMPION: "3", CHALLENGER: "3"}
    below_baseline = promote(3.2, old)
    assert not below_baseline.promoted
    assert "does not beat the median baseline" in below_baseline.reason
    assert _aliases(client) == {CHAMPION: "3", CHALLENGER: "4"}


def test_a_challenger_that_does_not_beat_the_baseline_is_not_promoted(store) -> None:
    client, _, experiment_id = store
    result = promote_challenger(
        client,
        NAME,
        _register(client, experiment_id, 0.8),
        challenger_metric=0.8,
        baseline_metric=0.7,
        metric="backtest_mase",
        metric_label="backtest MASE",
        baseline_label="the best baseline (Zero)",
    )
    assert not result.promoted and result.champion_version is None
    assert result.reason == (
        "challenger backtest MASE 0.8000 does not beat the best baseline (Zero) 0.7000"
    )
    assert _aliases(client) == {CHAMPION: None, CHALLENGER: "1"}


def test_the_champion_is_compared_by_the_named_metric(store) -> None:
    """The champion's metric is read from its run under ``metric``; a champion without it
    counts as no champion."""
    client, _, experiment_id = store
    promote_challenger(
        client,
        NAME,
        _register(client, experiment_id, 2.0),
        challenger_metric=2.0,
        baseline_metric=3.0,
        metric="another_metric",
    )
    second = promote_challenger(
        client,
        NAME,
        _register(client, experiment_id, 2.5),
        challenger_metric=2.5,
        baseline_metric=3.0,
        metric="another_metric",
    )
    assert second.promoted and second.champion_metric is None
    assert _aliases(client)[CHAMPION] == "2"


@pytest.mark.parametrize(
    ("challenger", "champion", "promoted"),
    [(0.9, None, True), (0.9, 0.8, True), (0.8, 0.8, False), (0.7, 0.8, False), (0.4, None, False)],
)
def test_greater_is_better(challenger, champion, promoted) -> None:
    decision = decide_promotion(challenger, champion, 0.5, greater_is_better=True)
    assert decision.promoted is promoted, decision.reason


def test_logged_answer_model_is_registered_promoted_and_loads(store) -> None:
    client, uri, experiment_id = store
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=40), "emb_000": rng.uniform(0, 10, size=40)})
    y = 3 * X["a"].to_numpy() + X["emb_000"].to_numpy()
    params = {"n_estimators": 5}
    cv = cross_validate(X, y, params=params, n_folds=4, seed=1)
    estimator = build_estimator(params, "signed_log", 1).fit(X, y)
    cv_frame = pd.DataFrame({"fold": cv.fold, "model": cv.model})
    with mlflow.start_run(experiment_id=experiment_id) as run:
        version = log_answer_model(
            estimator,
            X,
            name=NAME,
            cv=cv,
            ablation={"all": 1.0},
            transform="signed_log",
            feature_set="all",
            cv_folds=4,
            seed=1,
            cv_predictions=cv_frame,
        )
        result = promote_challenger(
            client,
            NAME,
            version,
            challenger_metric=cv.metrics["model"]["signed_log_mae"],
            baseline_metric=np.inf,
        )
    assert version == "1" and result.promoted
    logged = client.get_run(run.info.run_id).data
    assert logged.metrics[PRIMARY_METRIC] == pytest.approx(cv.metrics["model"]["signed_log_mae"])
    assert "cv_median_baseline_signed_log_mae" in logged.metrics
    assert logged.metrics["cv_ablation_all_signed_log_mae"] == 1.0
    assert logged.params["lgbm_n_estimators"] == "5" and logged.params["n_labelled"] == "40"
    assert logged.params["n_features"] == "2" and logged.params["target_transform"] == "signed_log"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
        FEATURE_COLUMNS_ARTIFACT,
        CV_PREDICTIONS_ARTIFACT,
    }
    read_back = read_frame_artifact(client, run.info.run_id, CV_PREDICTIONS_ARTIFACT)
    pd.testing.assert_frame_equal(read_back, cv_frame)
    champion = load_model(NAME, tracking_uri=uri)
    assert champion.version == "1" and champion.feature_columns == ["a", "emb_000"]
    np.testing.assert_array_equal(np.asarray(champion.predict(X)), estimator.predict(X))
    # the service's path (booster and inverse transform from a matrix) gives the same numbers
    assert champion.predict_matrix(X.to_numpy(np.float64)) == champion.predict(X)


def test_a_version_is_found_by_its_training_key_and_none_for_another(store) -> None:
    client, _, experiment_id = store
    assert version_by_training_key(client, NAME, "k1") is None  # no registered model yet
    for metric, key in ((2.5, "k1"), (2.7, "k2")):
        promote_challenger(
            client,
            NAME,
            _register(client, experiment_id, metric),
            challenger_metric=metric,
            baseline_metric=3.0,
            training_key=key,
        )
    untagged = _register(client, experiment_id, 2.9)  # e.g. registered before keys existed
    promote_challenger(client, NAME, untagged, challenger_metric=2.9, baseline_metric=3.0)

    found = version_by_training_key(client, NAME, "k1")
    assert found is not None and str(found.version) == "1"
    assert found.tags[TRAINING_KEY_TAG] == "k1"
    assert str(version_by_training_key(client, NAME, "k2").version) == "2"
    assert version_by_training_key(client, NAME, "k3") is None
    assert version_by_training_key(client, "another-model", "k1") is None
    # the key is on the version's run too, beside the decision
    assert client.get_run(found.run_id).data.tags[TRAINING_KEY_TAG] == "k1"

    reused = find_reusable_version(client, NAME, "k2")
    assert reused is not None and reused.version == "2" and reused.run_id
    assert reused.metrics[PRIMARY_METRIC] == pytest.approx(2.7)
    assert reused.champion_version == "1" and reused.champion_metric == pytest.approx(2.5)
    assert reused.reason("training data") == "reused v2: training data unchanged"
    assert find_reusable_version(client, NAME, "k3") is None
    # two versions with one key (e.g. registered before the key was checked): the newest
    promote_challenger(
        client,
        NAME,
        _register(client, experiment_id, 2.4),
        challenger_metric=2.4,
        baseline_metric=3.0,
        training_key="k1",
    )
    assert str(version_by_training_key(client, NAME, "k1").version) == "4"


def test_a_frame_artifact_round_trips(store) -> None:
    client, _, experiment_id = store
    frame = pd.DataFrame(
        {
            "question_id": ["validation-0", "validation-1", "validation-2"],
            "topic": ["Accounting", "Corporate", None],
            "ground_truth": [1.5, -2.0, 1e6],
            "fold": np.array([0, 1, 2], dtype=np.int64),
            "ds": pd.to_datetime(["2013-03-01", "2013-03-04", "2013-03-05"]),
        }
    )
    with mlflow.start_run(experiment_id=experiment_id) as run:
        log_frame_artifact(frame, CV_PREDICTIONS_ARTIFACT)
    read_back = read_frame_artifact(client, run.info.run_id, CV_PREDICTIONS_ARTIFACT)
    pd.testing.assert_frame_equal(read_back, frame)
    with pytest.raises(MlflowException, match="Failed to download artifacts"):
        read_frame_artifact(client, run.info.run_id, "missing.parquet")
