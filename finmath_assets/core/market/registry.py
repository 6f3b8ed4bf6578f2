"""Registered market forecasters: names, the tags logged with them, logging and loading.

One registered model per target (``log_volume``, ``log_return``), each logged with mlforecast's
MLflow flavour (:func:`log_forecaster`) and promoted by the answer model's path
(:func:`finmath_assets.core.registry.promote_challenger`): beat the best baseline of the backtest
and strictly beat the current champion. The fitted ``MLForecast`` keeps the last values of every
series it was trained on, so serving needs the registry only, never the warehouse.

A version is tagged with its training key (:func:`forecaster_training_key`: the series, the
backtest and model settings, the code and the library versions); its run keeps the backtest
(:func:`log_backtest`), so a run on the same key reuses the version and its backtest
(:func:`read_backtest`) instead of registering a copy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from importlib import metadata
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from finmath_assets.core.market.forecasting import (
    Backtest,
    BacktestConfig,
    Target,
    forecast,
    series_fingerprint,
)
from finmath_assets.core.registry import (
    CHAMPION,
    log_frame_artifact,
    read_frame_artifact,
    source_digest,
    training_key,
    version_by_alias,
)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

FORECASTER_ARTIFACT = "forecaster"
TARGET_TAG = "finmath.forecast_target"
PRIMARY_METRIC = "backtest_mase"  # mean MASE of the forecaster over the backtest's series
BEST_BASELINE_METRIC = "backtest_mase_best_baseline"
BACKTEST_FORECASTS_ARTIFACT = "backtest_forecasts.parquet"
BACKTEST_METRICS_ARTIFACT = "backtest_metrics.parquet"
EXCLUDED_PARAM = "excluded_from_backtest"  # comma-separated tickers, or "none"
# the libraries a forecaster's backtest and fit depend on: another version is another training
FORECASTER_LIBRARIES = ("mlforecast", "statsforecast", "utilsforecast", "lightgbm")
# pinned like the answer model's: MLflow's own inference of them costs ~5 s per logged model
FORECASTER_PIP_REQUIREMENTS = [
    f"{package}=={metadata.version(package)}"
    for package in ("mlforecast", "utilsforecast", "lightgbm", "pandas", "numpy")
]


@dataclass
class LoadedForecaster:
    """A registered forecaster version: the fitted ``MLForecast`` and where it came from."""

    model: Any  # mlforecast.MLForecast
    name: str
    version: str
    alias: str | None
    run_id: str
    target: Target
    metrics: dict[str, float] = field(default_factory=dict)
    trained_at: int | None = None  # run start, epoch milliseconds

    @property
    def tickers(self) -> list[str]:
        return [str(uid) for uid in self.model.ts.uids]

    @property
    def last_dates(self) -> dict[str, date]:
        """Each ticker's last training day: forecasts start the business day after."""
        return {
            str(uid): pd.Timestamp(day).date()
            for uid, day in zip(self.model.ts.uids, self.model.ts.last_dates, strict=True)
        }

    def forecast(self, tickers: list[str], horizon: int) -> pd.DataFrame:
        return forecast(self.model, tickers, horizon)


def load_forecaster(
    name: str,
    alias: str = CHAMPION,
    *,
    tracking_uri: str,
    registry_uri: str | None = None,
) -> LoadedForecaster:
    """Load ``models:/<name>@<alias>`` with the target and metrics of its run; ``LookupError``
    when the alias is not set (e.g. the forecaster never beat its baseline)."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from mlforecast.flavor import load_model

    registry_uri = registry_uri or tracking_uri
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    version = version_by_alias(client, name, alias)
    if version is None:
        raise LookupError(f"registered model {name!r} has no version with alias {alias!r}")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri)
    if not version.run_id:
        raise LookupError(f"{name} v{version.version} was not logged from an MLflow run")
    # mlforecast.flavor is unannotated
    model = load_model(f"models:/{name}/{version.version}")  # type: ignore[no-untyped-call]
    run = client.get_run(version.run_id)
    return LoadedForecaster(
        model=model,
        name=name,
        version=str(version.version),
        alias=alias,
        run_id=version.run_id,
        target=cast(Target, run.data.tags[TARGET_TAG]),  # written by log_forecaster
        metrics=dict(run.data.metrics),
        trained_at=run.info.start_time,
    )


def log_forecaster(forecaster: Any, *, name: str, target: Target, metrics: dict[str, float]) -> str:
    """Log a fitted forecaster in the active MLflow run with mlforecast's flavour, tag its
    target, log ``metrics`` and register it as ``name``; returns the new version number (for
    :func:`finmath_assets.core.registry.promote_challenger`)."""
    import mlflow
    from mlforecast.flavor import log_model

    mlflow.set_tag(TARGET_TAG, target)
    mlflow.log_metrics(metrics)
    info = log_model(  # type: ignore[no-untyped-call]  # mlforecast.flavor is unannotated
        model=forecaster,
        artifact_path=None,  # MLflow 3 names logged models with `name`
        name=FORECASTER_ARTIFACT,
        registered_model_name=name,
        pip_requirements=FORECASTER_PIP_REQUIREMENTS,
    )
    return str(info.registered_model_version)


def forecaster_training_key(series: pd.DataFrame, config: BacktestConfig, target: Target) -> str:
    """The training key of one forecaster run (``core.registry.training_key``): the
    :func:`~finmath_assets.core.market.forecasting.series_fingerprint` of ``series``, every
    field of ``config`` (the backtest's and the model's), the target, the source of
    ``core/market/forecasting.py`` and the versions of :data:`FORECASTER_LIBRARIES`."""
    from finmath_assets.core.market import forecasting

    return training_key(
        {
            "model": "forecaster",
            "target": target,
            "series": series_fingerprint(series),
            "config": asdict(config),
            "code": source_digest(str(forecasting.__file__)),
            "libraries": {name: metadata.version(name) for name in FORECASTER_LIBRARIES},
        }
    )


def log_backtest(result: Backtest) -> None:
    """Log a backtest's forecasts and metrics as parquet artefacts of the active MLflow run (the
    excluded series are a run param, :data:`EXCLUDED_PARAM`); :func:`read_backtest` reads them
    back."""
    log_frame_artifact(result.forecasts, BACKTEST_FORECASTS_ARTIFACT)
    log_frame_artifact(result.metrics, BACKTEST_METRICS_ARTIFACT)


def read_backtest(client: MlflowClient, run_id: str) -> Backtest:
    """The backtest logged with run ``run_id`` by :func:`log_backtest`."""
    excluded = client.get_run(run_id).data.params.get(EXCLUDED_PARAM, "none")
    return Backtest(
        forecasts=read_frame_artifact(client, run_id, BACKTEST_FORECASTS_ARTIFACT),
        metrics=read_frame_artifact(client, run_id, BACKTEST_METRICS_ARTIFACT),
        excluded=[] if excluded == "none" else excluded.split(","),
    )
