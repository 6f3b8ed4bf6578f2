"""The MLflow model registry contract: logging the answer model, the one register-and-promote
path, and loading a model by alias.

Uses MLflow but no Dagster or FastAPI: the answer-model and forecaster assets log, register and
promote with it (:func:`promote_challenger`), the serving service (and `batch_predictions`) load
the champion with it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # mlflow imports fastapi; keep importing this module framework-free
    import pandas as pd
    from lightgbm import LGBMRegressor
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient
    from sklearn.compose import TransformedTargetRegressor

    from finmath_assets.core.modeling import CrossValidation, FeatureSet, TargetTransform

CHAMPION = "champion"
CHALLENGER = "challenger"
PRIMARY_METRIC = "cv_signed_log_mae"  # lower is better
BASELINE_METRIC = "cv_median_baseline_signed_log_mae"
FEATURE_COLUMNS_ARTIFACT = "feature_columns.json"
EMBEDDING_MODEL_TAG = "finmath.embedding_model_id"
# the promotion decision, as run tags and model-version tags of every registered version
PROMOTED_TAG = "finmath.promoted"
PROMOTION_REASON_TAG = "finmath.promotion_reason"
CHALLENGER_METRIC_TAG = "finmath.challenger_metric"
CHAMPION_METRIC_TAG = "finmath.champion_metric"

# The logged answer model pins exactly what it was trained with (no dependency inference).
MODEL_PIP_REQUIREMENTS = [
    f"{package}=={metadata.version(package)}"
    for package in ("lightgbm", "scikit-learn", "pandas", "numpy")
]
# MLflow saves scikit-learn models with skops, which loads only the types listed here. The two
# transform functions live in finmath_assets.core.modeling: loading the model needs the finmath
# package installed (the serving image has it).
SKOPS_TRUSTED_TYPES = [
    "collections.OrderedDict",
    "finmath_assets.core.modeling.inverse_signed_log",
    "finmath_assets.core.modeling.signed_log",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMRegressor",
]


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    reason: str
    challenger_metric: float
    champion_metric: float | None
    baseline_metric: float


def decide_promotion(
    challenger_metric: float,
    champion_metric: float | None,
    baseline_metric: float,
    *,
    metric: str = PRIMARY_METRIC,
    baseline: str = "the median baseline",
    greater_is_better: bool = False,
) -> PromotionDecision:
    """Promote only a model that beats the baseline and strictly beats the champion (lower is
    better unless ``greater_is_better``). The answer model and the market forecasters share this
    rule."""

    def decision(promoted: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(
            promoted, reason, challenger_metric, champion_metric, baseline_metric
        )

    def beats(value: float, other: float) -> bool:
        return value > other if greater_is_better else value < other

    if not math.isfinite(challenger_metric):
        return decision(False, "challenger metric is not finite")
    # "not worse or equal" rather than "not beats": a NaN baseline does not block promotion
    if (
        challenger_metric <= baseline_metric
        if greater_is_better
        else challenger_metric >= baseline_metric
    ):
        return decision(
            False,
            f"challenger {metric} {challenger_metric:.4f} does not beat {baseline} "
            f"{baseline_metric:.4f}",
        )
    if champion_metric is None:
        return decision(True, f"no champion yet and the challenger beats {baseline}")
    if beats(challenger_metric, champion_metric):
        return decision(
            True, f"challenger {challenger_metric:.4f} beats champion {champion_metric:.4f}"
        )
    return decision(
        False,
        f"challenger {challenger_metric:.4f} does not beat champion {champion_metric:.4f}",
    )


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The model version holding ``alias``, or ``None`` (no model, or alias not set)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


@dataclass(frozen=True)
class PromotionResult:
    """What :func:`promote_challenger` did with a newly registered version."""

    name: str
    version: str
    promoted: bool
    reason: str
    challenger_metric: float
    champion_metric: float | None  # the champion's metric before this version (None: none)
    baseline_metric: float
    champion_version: str | None  # the champion after the decision (None: still none)


def promote_challenger(
    client: MlflowClient,
    name: str,
    version: str,
    *,
    challenger_metric: float,
    baseline_metric: float,
    metric: str = PRIMARY_METRIC,
    metric_label: str | None = None,
    baseline_label: str = "the median baseline",
    greater_is_better: bool = False,
) -> PromotionResult:
    """The one promotion path for every registered model (answer model and forecasters).

    ``version`` of ``name`` is already registered (``registered_model_name`` of the log call,
    see :func:`log_answer_model` and ``core.market.registry.log_forecaster``). It gets alias
    ``challenger``; it is compared with the ``metric`` of the current ``champion``'s run by
    :func:`decide_promotion` (``metric_label`` and ``baseline_label`` name them in the reason)
    and takes alias ``champion`` if it wins. The decision is tagged on the version's run and on
    the model version.
    """
    champion = version_by_alias(client, name, CHAMPION)
    champion_metric = (
        client.get_run(champion.run_id).data.metrics.get(metric)
        if champion is not None and champion.run_id
        else None
    )
    decision = decide_promotion(
        challenger_metric,
        champion_metric,
        baseline_metric,
        metric=metric_label or metric,
        baseline=baseline_label,
        greater_is_better=greater_is_better,
    )
    client.set_registered_model_alias(name, CHALLENGER, version)
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    tags = {
        PROMOTED_TAG: str(decision.promoted).lower(),
        PROMOTION_REASON_TAG: decision.reason,
        CHALLENGER_METRIC_TAG: f"{decision.challenger_metric:.6f}",
        CHAMPION_METRIC_TAG: "none"
        if decision.champion_metric is None
        else f"{decision.champion_metric:.6f}",
    }
    run_id = client.get_model_version(name, version).run_id
    for key, value in tags.items():
        if run_id:
            client.set_tag(run_id, key, value)
        client.set_model_version_tag(name, version, key, value)
    if decision.promoted:
        champion_version: str | None = version
    else:
        champion_version = None if champion is None else str(champion.version)
    return PromotionResult(
        name=name,
        version=version,
        promoted=decision.promoted,
        reason=decision.reason,
        challenger_metric=decision.challenger_metric,
        champion_metric=decision.champion_metric,
        baseline_metric=decision.baseline_metric,
        champion_version=champion_version,
    )


def log_answer_model(
    estimator: TransformedTargetRegressor | LGBMRegressor,
    features: pd.DataFrame,
    *,
    name: str,
    cv: CrossValidation,
    ablation: Mapping[str, float],
    transform: TargetTransform,
    feature_set: FeatureSet,
    cv_folds: int,
    seed: int,
) -> str:
    """Log the fitted answer model in the active MLflow run and register it as ``name``;
    returns the new version number.

    Logs the LightGBM parameters (``lgbm_*``) and the training settings as params, the CV
    metrics of the model and the baselines (``cv_*``) and of every feature set
    (``cv_ablation_*``), the feature column list (:data:`FEATURE_COLUMNS_ARTIFACT`, which
    :func:`load_model` reads back), and the model with signature, input example and
    :data:`MODEL_PIP_REQUIREMENTS`.
    """
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.compose import TransformedTargetRegressor

    regressor = (
        estimator.regressor if isinstance(estimator, TransformedTargetRegressor) else estimator
    )
    mlflow.log_params(
        {
            **{f"lgbm_{k}": v for k, v in regressor.get_params().items()},
            "target_transform": transform,
            "feature_set": feature_set,
            "cv_folds": cv_folds,
            "seed": seed,
            "n_labelled": len(features),
            "n_features": features.shape[1],
        }
    )
    mlflow.log_metrics(
        {
            f"cv_{'' if model == 'model' else model + '_'}{metric}": value
            for model, metrics in cv.metrics.items()
            for metric, value in metrics.items()
        }
        | {f"cv_ablation_{subset}_signed_log_mae": value for subset, value in ablation.items()}
    )
    # a JSON list, as load_model reads it: log_dict writes any JSON value despite its annotation
    mlflow.log_dict(list(features.columns), FEATURE_COLUMNS_ARTIFACT)  # type: ignore[arg-type]
    sample = features.head(20)
    info = mlflow.sklearn.log_model(
        estimator,
        name="model",
        signature=infer_signature(sample, estimator.predict(sample)),
        input_example=features.head(3),
        pip_requirements=MODEL_PIP_REQUIREMENTS,
        registered_model_name=name,
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
    )
    return str(info.registered_model_version)


@dataclass
class LoadedModel:
    """A registered model version with what is needed to build its input."""

    model: Any  # mlflow.pyfunc.PyFuncModel
    name: str
    version: str
    alias: str | None
    run_id: str
    feature_columns: list[str]
    embedding_model_id: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    trained_at: int | None = None  # run start, epoch milliseconds

    def predict(self, frame: pd.DataFrame) -> list[float]:
        """Predict from a frame holding (at least) ``feature_columns``.

        Calls the underlying scikit-learn estimator: pyfunc's per-call schema enforcement over
        416 columns costs ~45 ms a request, and the columns were already checked when the model
        was accepted (``serving.model_state.check_compatible``).
        """
        raw = self.model.get_raw_model() if hasattr(self.model, "get_raw_model") else self.model
        return [float(v) for v in raw.predict(frame[self.feature_columns])]


def current_version(
    name: str, alias: str, *, tracking_uri: str, registry_uri: str | None = None
) -> str | None:
    """The version number ``alias`` points at now (``None`` if unset): a cheap registry poll."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)
    version = version_by_alias(client, name, alias)
    return None if version is None else str(version.version)


def load_model(
    name: str,
    alias: str = CHAMPION,
    *,
    tracking_uri: str,
    registry_uri: str | None = None,
    model_uri: str | None = None,
) -> LoadedModel:
    """Load ``models:/<name>@<alias>`` (or ``model_uri``, e.g. ``runs:/<id>/model``) with the
    feature column list and embedding model id recorded with its run."""
    import mlflow
    from mlflow.tracking import MlflowClient

    registry_uri = registry_uri or tracking_uri
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri)
    loaded_alias: str | None = alias
    number: str | int | None
    if model_uri is None:
        version = version_by_alias(client, name, alias)
        if version is None:
            raise LookupError(f"registered model {name!r} has no version with alias {alias!r}")
        uri, run_id, number = f"models:/{name}/{version.version}", version.run_id, version.version
    else:
        info = mlflow.models.get_model_info(model_uri)
        uri, run_id, number = model_uri, info.run_id, info.registered_model_version
        loaded_alias = None
    if not run_id:
        raise LookupError(f"model {uri!r} was not logged from an MLflow run")
    model = mlflow.pyfunc.load_model(uri)
    run = client.get_run(run_id)
    columns_path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=FEATURE_COLUMNS_ARTIFACT, tracking_uri=tracking_uri
    )
    with open(columns_path) as handle:
        feature_columns = json.load(handle)
    return LoadedModel(
        model=model,
        name=name,
        version="" if number is None else str(number),
        alias=loaded_alias,
        run_id=run_id,
        feature_columns=feature_columns,
        embedding_model_id=run.data.tags.get(EMBEDDING_MODEL_TAG),
        metrics=dict(run.data.metrics),
        trained_at=run.info.start_time,
    )
