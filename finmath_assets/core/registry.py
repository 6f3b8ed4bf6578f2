"""The MLflow model registry contract: logging the answer model, the one register-and-promote
path, and loading a model by alias.

Uses MLflow but no Dagster or FastAPI: the answer-model and forecaster assets log, register and
promote with it (:func:`promote_challenger`), the serving service (and `batch_predictions`) load
the champion with it.

Reuse: every registered version carries a training key (:data:`TRAINING_KEY_TAG`, a SHA-256 of
what it was trained on and with, :func:`training_key`). An asset that would train on the same key
finds that version (:func:`version_by_training_key`) and reuses it instead of registering a copy;
what it needs besides the model (e.g. the out-of-fold predictions) is a parquet artefact of the
version's run (:func:`log_frame_artifact`, :func:`read_frame_artifact`).
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # mlflow imports fastapi; keep importing this module framework-free
    import numpy as np
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
# what a version was trained on and with (training_key): a version with the key is reused
TRAINING_KEY_TAG = "finmath.training_key"
CV_PREDICTIONS_ARTIFACT = "cv_predictions.parquet"  # the answer model's out-of-fold frame

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


def champion_with_metric(
    client: MlflowClient, name: str, metric: str
) -> tuple[ModelVersion | None, float | None]:
    """The current ``champion`` version of ``name`` and the ``metric`` of its run (``None`` when
    there is no champion, or its run lacks the metric)."""
    champion = version_by_alias(client, name, CHAMPION)
    value = (
        client.get_run(champion.run_id).data.metrics.get(metric)
        if champion is not None and champion.run_id
        else None
    )
    return champion, value


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
    training_key: str | None = None,
    embedding_model_id: str | None = None,
) -> PromotionResult:
    """The one promotion path for every registered model (answer model and forecasters).

    ``version`` of ``name`` is already registered (``registered_model_name`` of the log call,
    see :func:`log_answer_model` and ``core.market.registry.log_forecaster``). It gets alias
    ``challenger``; it is compared with the ``metric`` of the current ``champion``'s run by
    :func:`decide_promotion` (``metric_label`` and ``baseline_label`` name them in the reason)
    and takes alias ``champion`` if it wins. The decision is tagged on the version's run and on
    the model version. ``training_key`` (:func:`training_key`) is tagged last, once the version
    is complete: only then can :func:`version_by_training_key` find it for reuse.

    ``embedding_model_id`` (the answer model's) is what the challenger was trained on. A champion
    trained on other embeddings (a changed ``FINMATH_EMBEDDING_BACKEND`` or model) can no longer
    be fed by this deployment's service, so it is not a bar: the challenger then only has to beat
    the baseline, and the reason says so.
    """
    champion, champion_metric = champion_with_metric(client, name, metric)
    champion_embeds = (
        client.get_run(champion.run_id).data.tags.get(EMBEDDING_MODEL_TAG)
        if embedding_model_id is not None and champion is not None and champion.run_id
        else None
    )
    unservable = champion_embeds is not None and champion_embeds != embedding_model_id
    decision = decide_promotion(
        challenger_metric,
        None if unservable else champion_metric,
        baseline_metric,
        metric=metric_label or metric,
        baseline=baseline_label,
        greater_is_better=greater_is_better,
    )
    if unservable and champion is not None:
        decision = replace(
            decision,
            champion_metric=champion_metric,
            reason=f"the champion (v{champion.version}) was trained on {champion_embeds} "
            f"embeddings, which this deployment no longer computes; "
            + decision.reason.replace("no champion yet and the", "the"),
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
    if training_key is not None:
        tags[TRAINING_KEY_TAG] = training_key  # last (dicts keep insertion order)
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
    cv_predictions: pd.DataFrame | None = None,
) -> str:
    """Log the fitted answer model in the active MLflow run and register it as ``name``;
    returns the new version number.

    Logs the LightGBM parameters (``lgbm_*``) and the training settings as params, the CV
    metrics of the model and the baselines (``cv_*``) and of every feature set
    (``cv_ablation_*``), the feature column list (:data:`FEATURE_COLUMNS_ARTIFACT`, which
    :func:`load_model` reads back), the out-of-fold frame ``cv_predictions`` if given
    (:data:`CV_PREDICTIONS_ARTIFACT`, read back when the version is reused), and the model with
    signature, input example and :data:`MODEL_PIP_REQUIREMENTS`.
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
    if cv_predictions is not None:
        log_frame_artifact(cv_predictions, CV_PREDICTIONS_ARTIFACT)
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


def _json_default(value: object) -> object:
    item = getattr(value, "item", None)  # numpy scalars: the same key as the Python value
    return item() if callable(item) else str(value)


def training_key(parts: Mapping[str, object]) -> str:
    """SHA-256 of ``parts`` as canonical JSON (sorted keys, no spaces): equal parts, equal key.
    Tagged on a registered version (:data:`TRAINING_KEY_TAG`) by :func:`promote_challenger`."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def source_digest(*files: str | Path) -> str:
    """SHA-256 of the bytes of source ``files``: the code part of a training key."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(Path(file).read_bytes())
    return digest.hexdigest()


def answer_model_training_key(
    *,
    data_fingerprint: str,
    row_ids: Sequence[str],
    feature_columns: Sequence[str],
    params: Mapping[str, object],
    target_transform: str,
    feature_set: str,
    cv_folds: int,
    seed: int,
    embedding_model_id: str,
) -> str:
    """The answer model's :func:`training_key`: everything one training run reads.

    ``data_fingerprint`` is ``core.modeling.data_fingerprint`` of the labelled rows (all the
    feature columns the run cross-validates, not only the selected set: the ablation uses them
    too) and their target; ``row_ids`` name those rows (the out-of-fold frame carries them);
    ``params`` are the effective LightGBM parameters (``core.modeling.effective_params``). The
    key also covers the pinned library versions and the source of ``core/modeling.py``.
    """
    from finmath_assets.core import modeling

    return training_key(
        {
            "model": "answer_model",
            "data": data_fingerprint,
            "rows": hashlib.sha256("\x1f".join(row_ids).encode()).hexdigest(),
            "feature_columns": list(feature_columns),
            "params": dict(params),
            "target_transform": target_transform,
            "feature_set": feature_set,
            "cv_folds": cv_folds,
            "seed": seed,
            "embedding_model_id": embedding_model_id,
            "requirements": MODEL_PIP_REQUIREMENTS,
            "code": source_digest(str(modeling.__file__)),
        }
    )


def version_by_training_key(client: MlflowClient, name: str, key: str) -> ModelVersion | None:
    """The newest ready version of ``name`` tagged with training key ``key``, or ``None``.

    Asks the registry with a tag filter (works on the sqlite store and the MLflow server) and
    checks the answer again, so a store that ignored part of the filter cannot cause a reuse.
    """
    if "'" in name or "'" in key:
        raise ValueError(f"a model name or training key with a quote: {name!r} {key!r}")
    found = client.search_model_versions(
        filter_string=f"name = '{name}' and tags.`{TRAINING_KEY_TAG}` = '{key}'"
    )
    matching = [
        v
        for v in found
        if v.name == name and v.tags.get(TRAINING_KEY_TAG) == key and v.status == "READY"
    ]
    return max(matching, key=lambda v: int(v.version), default=None)


@dataclass(frozen=True)
class ReusedVersion:
    """A registered version found by its training key, what its run recorded, and the
    champion now (for the asset's row: a reused version is never promoted again)."""

    name: str
    version: str
    run_id: str
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    trained_at: int | None  # its run's start, epoch milliseconds
    champion_version: str | None
    champion_metric: float | None  # the champion's ``metric`` (None: no champion)

    def reason(self, unchanged: str) -> str:
        """The promotion reason a reused version's row carries."""
        return f"reused v{self.version}: {unchanged} unchanged"


def find_reusable_version(
    client: MlflowClient, name: str, key: str, *, metric: str = PRIMARY_METRIC
) -> ReusedVersion | None:
    """:func:`version_by_training_key` with its run's metrics, params and tags and the current
    champion's ``metric``; ``None`` when no version has ``key`` (or it has no run)."""
    version = version_by_training_key(client, name, key)
    if version is None or not version.run_id:
        return None
    run = client.get_run(version.run_id)
    champion, champion_metric = champion_with_metric(client, name, metric)
    return ReusedVersion(
        name=name,
        version=str(version.version),
        run_id=version.run_id,
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        tags=dict(run.data.tags),
        trained_at=run.info.start_time,
        champion_version=None if champion is None else str(champion.version),
        champion_metric=champion_metric,
    )


def log_frame_artifact(frame: pd.DataFrame, artifact_file: str) -> None:
    """Log ``frame`` as parquet ``artifact_file`` (e.g. ``cv_predictions.parquet``) of the active
    MLflow run; :func:`read_frame_artifact` reads it back."""
    import mlflow

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / artifact_file
        frame.to_parquet(path, index=False)
        mlflow.log_artifact(str(path))


def read_frame_artifact(client: MlflowClient, run_id: str, artifact_file: str) -> pd.DataFrame:
    """The parquet artefact ``artifact_file`` of run ``run_id`` as a DataFrame (an
    ``MlflowException`` or ``OSError`` when the run has no such artefact)."""
    import pandas as pd

    with tempfile.TemporaryDirectory() as folder:
        return pd.read_parquet(client.download_artifacts(run_id, artifact_file, folder))


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
        return [float(v) for v in self._raw.predict(frame[self.feature_columns])]

    def predict_matrix(self, matrix: np.ndarray) -> list[float]:
        """Predict from float64 rows already in ``feature_columns`` order (the service's path).

        The project's model, a ``TransformedTargetRegressor`` over LightGBM, runs as its booster
        plus the inverse target transform: the same numbers (tested) without ~1 ms of
        scikit-learn and pandas input handling per call. Any other estimator gets a frame.
        """
        raw = self._raw
        booster = getattr(getattr(raw, "regressor_", None), "booster_", None)
        inverse = getattr(getattr(raw, "transformer_", None), "inverse_func", None)
        if booster is None or inverse is None:
            import pandas as pd

            return self.predict(pd.DataFrame(matrix, columns=self.feature_columns))
        return [float(v) for v in inverse(booster.predict(matrix, num_threads=1))]

    @property
    def _raw(self) -> Any:
        return self.model.get_raw_model() if hasattr(self.model, "get_raw_model") else self.model


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
