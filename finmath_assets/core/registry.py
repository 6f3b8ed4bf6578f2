"""The MLflow model registry contract: promotion rule and loading a model by alias.

Uses MLflow but no Dagster or FastAPI: the answer-model asset registers and promotes with it,
the serving service (and `batch_predictions`) load the champion with it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # mlflow imports fastapi; keep importing this module framework-free
    from mlflow.tracking import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"
PRIMARY_METRIC = "cv_signed_log_mae"  # lower is better
BASELINE_METRIC = "cv_median_baseline_signed_log_mae"
FEATURE_COLUMNS_ARTIFACT = "feature_columns.json"
EMBEDDING_MODEL_TAG = "finmath.embedding_model_id"


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
) -> PromotionDecision:
    """Promote only a model that beats the baseline and strictly beats the champion (lower is
    better). The answer model and the market forecasters share this rule."""

    def decision(promoted: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(
            promoted, reason, challenger_metric, champion_metric, baseline_metric
        )

    if not math.isfinite(challenger_metric):
        return decision(False, "challenger metric is not finite")
    if challenger_metric >= baseline_metric:
        return decision(
            False,
            f"challenger {metric} {challenger_metric:.4f} does not beat {baseline} "
            f"{baseline_metric:.4f}",
        )
    if champion_metric is None:
        return decision(True, f"no champion yet and the challenger beats {baseline}")
    if challenger_metric < champion_metric:
        return decision(
            True, f"challenger {challenger_metric:.4f} beats champion {champion_metric:.4f}"
        )
    return decision(
        False,
        f"challenger {challenger_metric:.4f} does not beat champion {champion_metric:.4f}",
    )


def version_by_alias(client: MlflowClient, name: str, alias: str):
    """The model version holding ``alias``, or ``None`` (no model, or alias not set)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


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

    def predict(self, frame) -> list[float]:
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
    if model_uri is None:
        version = version_by_alias(client, name, alias)
        if version is None:
            raise LookupError(f"registered model {name!r} has no version with alias {alias!r}")
        uri, run_id, number = f"models:/{name}/{version.version}", version.run_id, version.version
    else:
        info = mlflow.models.get_model_info(model_uri)
        if not info.run_id:
            raise LookupError(f"model {model_uri!r} was not logged from an MLflow run")
        uri, run_id, number, alias = model_uri, info.run_id, info.registered_model_version, None
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
        alias=alias,
        run_id=run_id,
        feature_columns=feature_columns,
        embedding_model_id=run.data.tags.get(EMBEDDING_MODEL_TAG),
        metrics=dict(run.data.metrics),
        trained_at=run.info.start_time,
    )
