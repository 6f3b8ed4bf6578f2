"""features -> answer_model (+ cv_predictions) -> evaluation_report, batch_predictions."""

import json
from datetime import UTC, datetime

import dagster as dg
import numpy as np
import pandas as pd

from finmath_assets.core.evaluation import build_report, report_markdown, report_rows
from finmath_assets.core.features import EMBEDDING_PREFIX, ID_COLUMNS
from finmath_assets.core.features import feature_columns as all_feature_columns
from finmath_assets.core.modeling import (
    FEATURE_SETS,
    build_estimator,
    cross_validate,
    data_fingerprint,
    effective_params,
    select_features,
)
from finmath_assets.core.registry import (
    BASELINE_METRIC,
    CHAMPION,
    CV_PREDICTIONS_ARTIFACT,
    EMBEDDING_MODEL_TAG,
    PRIMARY_METRIC,
    TRAINING_KEY_TAG,
    ReusedVersion,
    answer_model_training_key,
    find_reusable_version,
    load_model,
    log_answer_model,
    promote_challenger,
    read_frame_artifact,
)
from finmath_assets.defs.constants import DUCKDB_POOL, KEY_PREFIX, WAREHOUSE_IO_MANAGER
from finmath_assets.defs.resources import (
    EmbeddingModelResource,
    MlflowTrackingResource,
    ProcessedFilesResource,
    TrainingResource,
    WarehouseResource,
)

GROUP = "modeling"
EVALUATION_REPORT_JSON = "evaluation_report.json"


class AnswerModelConfig(dg.Config):
    """Per-run overrides of the LightGBM parameters (empty: the defaults in core.modeling)."""

    n_estimators: int | None = None
    learning_rate: float | None = None
    num_leaves: int | None = None
    objective: str | None = None

    def params(self) -> dict:
        return {k: v for k, v in self.model_dump().items() if v is not None}


def _embedding_dim(columns: list[str]) -> int:
    return sum(1 for c in columns if c.startswith(EMBEDDING_PREFIX))


CV_COLUMNS = (
    "question_id",
    "topic",
    "ground_truth",
    "fold",
    "model",
    "mean_baseline",
    "median_baseline",
)
UNCHANGED = "training data, features and parameters"


def _reused_outputs(reused: ReusedVersion, common: dict) -> tuple[pd.DataFrame, dict]:
    """The ``answer_model`` row and metadata of a reused version, from what its run recorded."""
    reason = reused.reason(UNCHANGED)
    metric = reused.metrics[PRIMARY_METRIC]
    baseline = reused.metrics[BASELINE_METRIC]
    ablation = {name: reused.metrics[f"cv_ablation_{name}_signed_log_mae"] for name in FEATURE_SETS}
    trained_at = (
        datetime.fromtimestamp(reused.trained_at / 1000, UTC)
        if reused.trained_at
        else datetime.now(UTC)
    )
    row = {
        "model_name": reused.name,
        "version": reused.version,
        "run_id": reused.run_id,
        "promoted": False,
        "promotion_reason": reason,
        "champion_version": reused.champion_version,
        PRIMARY_METRIC: metric,
        BASELINE_METRIC: baseline,
        "champion_metric_before": reused.champion_metric,
        **common,
        "feature_set_ablation": json.dumps(ablation),
        "trained_at": trained_at.replace(tzinfo=None),
        "reused": True,
    }
    metadata = {
        "reused": True,
        "model_version": reused.version,
        "mlflow_run_id": reused.run_id,
        "promoted": False,
        "promotion_reason": reason,
        "cv_signed_log_mae": metric,
        "median_baseline_signed_log_mae": baseline,
        "champion_signed_log_mae_before": dg.MetadataValue.float(reused.champion_metric)
        if reused.champion_metric is not None
        else dg.MetadataValue.null(),
        "model_uri": f"models:/{reused.name}/{reused.version}",
    }
    return pd.DataFrame([row]), metadata


@dg.multi_asset(
    outs={
        "answer_model": dg.AssetOut(
            key_prefix=KEY_PREFIX,
            group_name=GROUP,
            io_manager_key=WAREHOUSE_IO_MANAGER,
            kinds={"lightgbm", "mlflow"},
            description="The LightGBM answer regressor trained on the labelled features, tracked "
            "and registered in MLflow; the table holds the registered version and its decision.",
        ),
        "cv_predictions": dg.AssetOut(
            key_prefix=KEY_PREFIX,
            group_name=GROUP,
            io_manager_key=WAREHOUSE_IO_MANAGER,
            kinds={"duckdb"},
            description="Out-of-fold predictions of the model and of the mean/median baselines.",
        ),
    },
    ins={"features": dg.AssetIn(key=[KEY_PREFIX, "features"])},
    pool=DUCKDB_POOL,
)
def train_answer_model(
    context: dg.AssetExecutionContext,
    config: AnswerModelConfig,
    features: pd.DataFrame,
    mlflow_tracking: MlflowTrackingResource,
    embedding_model: EmbeddingModelResource,
    training: TrainingResource,
):
    """Cross-validate, train, log, register and promote; or, when a registered version was
    trained on the same training key, reuse it: no new run or version, the out-of-fold frame read
    back from its run."""
    model_name = mlflow_tracking.model_name
    labelled = features[features["ground_truth"].notna()].reset_index(drop=True)
    available = list(features.columns[len(ID_COLUMNS) :])
    expected = all_feature_columns(_embedding_dim(available))
    if available != expected:
        raise ValueError("features columns differ from core.features.feature_columns(): rebuild")
    columns = select_features(available, training.feature_set)
    X = labelled[columns]
    y = labelled["ground_truth"].to_numpy(dtype=np.float64)
    params = config.params()
    transform = training.target_transform
    fingerprint = data_fingerprint(X, y)
    # the rows by id and topic: the out-of-fold frame, reused with the version, carries both
    row_ids = labelled["question_id"].astype(str) + "\x1f" + labelled["topic"].astype(str)
    key = answer_model_training_key(
        data_fingerprint=data_fingerprint(labelled[available], y),
        row_ids=row_ids.tolist(),
        feature_columns=columns,
        params=effective_params(params, training.seed),
        target_transform=transform,
        feature_set=training.feature_set,
        cv_folds=training.cv_folds,
        seed=training.seed,
        embedding_model_id=embedding_model.model_id,
    )
    common = {
        "target_transform": transform,
        "feature_set": training.feature_set,
        "n_features": len(columns),
        "n_labelled": len(labelled),
        "cv_folds": training.cv_folds,
        "data_fingerprint": fingerprint,
    }
    client = mlflow_tracking.client()
    reused = find_reusable_version(client, model_name, key)
    if reused is not None:
        try:
            cv_frame = read_frame_artifact(client, reused.run_id, CV_PREDICTIONS_ARTIFACT)
        except Exception as error:  # an artefact store that lost it: train a new version
            context.log.warning(
                f"{model_name} v{reused.version} has training key {key[:12]} but its "
                f"{CV_PREDICTIONS_ARTIFACT} cannot be read ({error}): training anew"
            )
            reused = None
    if reused is not None:
        model_row, metadata = _reused_outputs(reused, common)
        context.log.info(
            f"reused {model_name} v{reused.version} (training key {key[:12]}): {UNCHANGED} "
            "unchanged, nothing cross-validated, trained or registered"
        )
        yield dg.Output(
            model_row, output_name="answer_model", metadata={**metadata, "training_key": key}
        )
        yield dg.Output(cv_frame[list(CV_COLUMNS)], output_name="cv_predictions")
        return

    context.log.info(
        f"training on {len(labelled)} labelled rows x {len(columns)} features "
        f"({training.cv_folds}-fold CV, transform={transform}, overrides={params}); "
        f"no version of {model_name} has training key {key[:12]}"
    )
    # the same CV for every feature set, so the report shows what each group of features buys
    cv_by_set = {
        feature_set: cross_validate(
            labelled[select_features(available, feature_set)],
            y,
            params=params,
            transform=transform,
            n_folds=training.cv_folds,
            seed=training.seed,
        )
        for feature_set in FEATURE_SETS
    }
    cv = cv_by_set[training.feature_set]
    ablation = {
        name: result.metrics["model"]["signed_log_mae"] for name, result in cv_by_set.items()
    }
    estimator = build_estimator(params, transform, training.seed).fit(X, y)
    cv_frame = pd.DataFrame(
        {
            "question_id": labelled["question_id"],
            "topic": labelled["topic"],
            "ground_truth": y,
            "fold": cv.fold,
            "model": cv.model,
            "mean_baseline": cv.mean_baseline,
            "median_baseline": cv.median_baseline,
        }
    )

    tags = {
        "dagster.run_id": context.run_id,
        "dagster.asset": "finmath/answer_model",
        EMBEDDING_MODEL_TAG: embedding_model.model_id,
        "finmath.data_fingerprint": fingerprint,
        TRAINING_KEY_TAG: key,
    }
    with mlflow_tracking.start_run(run_name=f"answer-model-{context.run_id[:8]}", tags=tags) as run:
        new_version = log_answer_model(
            estimator,
            X,
            name=model_name,
            cv=cv,
            ablation=ablation,
            transform=transform,
            feature_set=training.feature_set,
            cv_folds=training.cv_folds,
            seed=training.seed,
            cv_predictions=cv_frame,
        )
        promotion = promote_challenger(
            client,
            model_name,
            new_version,
            challenger_metric=cv.metrics["model"]["signed_log_mae"],
            baseline_metric=cv.metrics["median_baseline"]["signed_log_mae"],
            training_key=key,
            embedding_model_id=embedding_model.model_id,
        )
        run_id = run.info.run_id
    context.log.info(f"registered {model_name} v{new_version}: {promotion.reason}")
    model_row = pd.DataFrame(
        [
            {
                "model_name": model_name,
                "version": new_version,
                "run_id": run_id,
                "promoted": promotion.promoted,
                "promotion_reason": promotion.reason,
                "champion_version": promotion.champion_version,
                PRIMARY_METRIC: promotion.challenger_metric,
                BASELINE_METRIC: promotion.baseline_metric,
                "champion_metric_before": promotion.champion_metric,
                **common,
                "feature_set_ablation": json.dumps(ablation),
                "trained_at": datetime.now(UTC).replace(tzinfo=None),
                "reused": False,
            }
        ]
    )
    yield dg.Output(
        model_row,
        output_name="answer_model",
        metadata={
            "reused": False,
            "model_version": new_version,
            "mlflow_run_id": run_id,
            "promoted": promotion.promoted,
            "promotion_reason": promotion.reason,
            "cv_signed_log_mae": promotion.challenger_metric,
            "median_baseline_signed_log_mae": promotion.baseline_metric,
            "champion_signed_log_mae_before": dg.MetadataValue.float(promotion.champion_metric)
            if promotion.champion_metric is not None
            else dg.MetadataValue.null(),
            "model_uri": f"models:/{model_name}/{new_version}",
            "training_key": key,
        },
    )
    yield dg.Output(cv_frame, output_name="cv_predictions")


@dg.asset(
    key_prefix=KEY_PREFIX,
    group_name=GROUP,
    io_manager_key=WAREHOUSE_IO_MANAGER,
    pool=DUCKDB_POOL,
    kinds={"duckdb", "mlflow"},
    ins={
        "answer_model": dg.AssetIn(key=[KEY_PREFIX, "answer_model"]),
        "cv_predictions": dg.AssetIn(key=[KEY_PREFIX, "cv_predictions"]),
    },
    description="MAE, RMSE, median AE and signed-log MAE of the out-of-fold predictions beside "
    "mean and median baselines, overall and per topic. Also evaluation_report.json, the MLflow "
    "run's artefacts, and the model_evaluations history table.",
)
def evaluation_report(
    context: dg.AssetExecutionContext,
    answer_model: pd.DataFrame,
    cv_predictions: pd.DataFrame,
    processed_files: ProcessedFilesResource,
    mlflow_tracking: MlflowTrackingResource,
    warehouse: WarehouseResource,
) -> pd.DataFrame:
    model = answer_model.iloc[0]
    report = build_report(
        cv_predictions,
        created_at=datetime.now(UTC),
        model_name=model["model_name"],
        model_version=str(model["version"]),
        run_id=model["run_id"],
        promoted_to_champion=bool(model["promoted"]),
        promotion_reason=model["promotion_reason"],
        cv_folds=int(model["cv_folds"]),
        target_transform=model["target_transform"],
        feature_set=model["feature_set"],
        n_features=int(model["n_features"]),
        feature_set_ablation=json.loads(model["feature_set_ablation"]),
    )
    path = processed_files.write_text(report.model_dump_json(indent=2), EVALUATION_REPORT_JSON)
    if not bool(model.get("reused", False)):
        # a reused version's run keeps the report of the training that registered it
        mlflow_tracking.client().log_dict(
            report.run_id, json.loads(report.model_dump_json()), EVALUATION_REPORT_JSON
        )
    rows = report_rows(report)
    history = rows.assign(
        model_name=report.model_name,
        model_version=report.model_version,
        run_id=report.run_id,
        evaluated_at=report.created_at.replace(tzinfo=None),
    )
    with warehouse.get_connection() as conn:
        conn.register("history", history)
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {KEY_PREFIX}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {KEY_PREFIX}.model_evaluations AS "
            "SELECT * FROM history WHERE false"
        )
        conn.execute(f"INSERT INTO {KEY_PREFIX}.model_evaluations BY NAME SELECT * FROM history")
    overall = report.overall
    context.add_output_metadata(
        {
            "report": dg.MetadataValue.md(report_markdown(report)),
            "report_path": dg.MetadataValue.path(str(path)),
            "model_signed_log_mae": overall.model.signed_log_mae,
            "median_baseline_signed_log_mae": overall.median_baseline.signed_log_mae,
            "mean_baseline_signed_log_mae": overall.mean_baseline.signed_log_mae,
            "beats_median_baseline": report.beats_median_baseline,
        }
    )
    return rows


@dg.asset(
    key_prefix=KEY_PREFIX,
    group_name=GROUP,
    io_manager_key=WAREHOUSE_IO_MANAGER,
    pool=DUCKDB_POOL,
    kinds={"duckdb", "mlflow"},
    ins={
        "features": dg.AssetIn(key=[KEY_PREFIX, "features"]),
        "answer_model": dg.AssetIn(key=[KEY_PREFIX, "answer_model"]),
    },
    description="The champion's predictions for the unlabelled (test) questions.",
)
def batch_predictions(
    context: dg.AssetExecutionContext,
    features: pd.DataFrame,
    answer_model: pd.DataFrame,
    mlflow_tracking: MlflowTrackingResource,
) -> pd.DataFrame:
    del answer_model  # a dependency only: predict after the latest training decision
    champion = load_model(
        mlflow_tracking.model_name,
        CHAMPION,
        tracking_uri=mlflow_tracking.tracking_uri,
        registry_uri=mlflow_tracking.registry_uri,
    )
    unlabelled = features[features["ground_truth"].isna()].reset_index(drop=True)
    missing = set(champion.feature_columns) - set(unlabelled.columns)
    if missing:
        raise ValueError(
            f"champion v{champion.version} needs columns the features lack: {sorted(missing)[:5]}"
        )
    predictions = champion.predict(unlabelled)
    context.log.info(
        f"predicted {len(predictions)} questions with {champion.name} v{champion.version}"
    )
    return pd.DataFrame(
        {
            "question_id": unlabelled["question_id"],
            "prediction": np.asarray(predictions, dtype=np.float64),
            "model_name": champion.name,
            "model_version": champion.version,
            "run_id": champion.run_id,
            "predicted_at": datetime.now(UTC).replace(tzinfo=None),
        }
    )
