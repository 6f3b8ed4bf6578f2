"""Forecasting daily series with mlforecast (LightGBM on lags, rolling means and calendar
features) and the rolling-origin backtest against statsforecast's Naive and SeasonalNaive(5).

Two targets per ticker: ``log_volume`` (log1p of shares traded) and ``log_return`` (day-on-day
change of log adjusted close). Business-day gaps (exchange holidays) are filled with
``utilsforecast.preprocessing.fill_gaps`` before anything is trained: mlforecast's lags assume
a gap-free calendar. A filled day carries the previous volume and a zero return.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # mlforecast imports lightgbm (~1.7 s): only when training or loading
    from mlforecast import MLForecast

Target = Literal["log_volume", "log_return"]
TARGETS: tuple[Target, ...] = ("log_volume", "log_return")
FREQ = "B"
SEASON = 5  # one trading week
MODEL = "lgbm"
LAGS = (1, 2, 3, 4, 5, 10, 20)


@dataclass(frozen=True)
class BacktestConfig:
    horizon: int = 5
    windows: int = 50  # forecast origins, one per `step` business days
    step: int = 5
    refit: bool = True  # retrain at every origin (honest, 10x slower than training once)
    n_estimators: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 31
    seed: int = 0
    threads: int = 0  # LightGBM threads (0: every core)

    @property
    def min_length(self) -> int:
        """Shortest series the backtest accepts: every window plus a year to learn from."""
        return self.windows * self.step + self.horizon + 250


def series_frame(prices: pd.DataFrame, target: Target) -> pd.DataFrame:
    """``unique_id, ds, y`` for one target, gap-free on business days."""
    from utilsforecast.preprocessing import fill_gaps

    prices = prices.sort_values(["ticker", "date"])
    if target == "log_volume":
        y = np.log1p(prices["volume"].astype("float64"))
    elif target == "log_return":
        y = np.log(prices["adj_close"]).groupby(prices["ticker"]).diff()
    else:
        raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")
    frame = pd.DataFrame(
        {"unique_id": prices["ticker"].to_numpy(), "ds": pd.to_datetime(prices["date"]), "y": y}
    )
    frame = frame.dropna(subset=["y"])  # the first return of each ticker
    filled = fill_gaps(frame, freq=FREQ)
    if target == "log_volume":
        filled["y"] = filled.groupby("unique_id")["y"].ffill()
    else:
        filled["y"] = filled["y"].fillna(0.0)
    return filled.sort_values(["unique_id", "ds"], ignore_index=True)


def series_fingerprint(series: pd.DataFrame) -> str:
    """SHA-256 of a :func:`series_frame` (ids, days and values in row order): what one
    backtest-and-fit run of a forecaster reads."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(series["unique_id"].astype(str)).encode())
    days = pd.to_datetime(series["ds"]).to_numpy(dtype="datetime64[ns]").view(np.int64)
    digest.update(np.ascontiguousarray(days).tobytes())
    digest.update(np.ascontiguousarray(series["y"].to_numpy(dtype=np.float64)).tobytes())
    return digest.hexdigest()


def build_forecaster(config: BacktestConfig) -> MLForecast:
    """The mlforecast pipeline (not yet fitted)."""
    from lightgbm import LGBMRegressor
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean

    model = LGBMRegressor(
        n_estimators=config.n_estimators,
        learning_rate=config.learning_rate,
        num_leaves=config.num_leaves,
        random_state=config.seed,
        n_jobs=config.threads or -1,
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
    )
    return MLForecast(
        models={MODEL: model},
        freq=FREQ,
        lags=list(LAGS),
        lag_transforms={1: [RollingMean(window_size=5), RollingMean(window_size=20)]},
        date_features=["dayofweek", "month"],
    )


@dataclass
class Backtest:
    forecasts: pd.DataFrame  # unique_id, ds, cutoff, y, Naive, SeasonalNaive, lgbm
    metrics: pd.DataFrame  # unique_id, metric, Naive, SeasonalNaive, lgbm (one row per series)
    excluded: list[str]  # series too short for the protocol

    @property
    def models(self) -> list[str]:
        """The baselines, then the forecaster, as columns of ``forecasts`` and ``metrics``."""
        return [c for c in self.metrics.columns if c not in ("unique_id", "metric")]

    def mean(self, metric: str) -> dict[str, float]:
        rows = self.metrics[self.metrics["metric"] == metric]
        return {name: float(rows[name].mean()) for name in self.models}


def backtest(
    series: pd.DataFrame, config: BacktestConfig | None = None, *, zero_baseline: bool = False
) -> Backtest:
    """Rolling-origin backtest: ``windows`` origins ``step`` business days apart, ``horizon``
    days ahead, the model and both baselines on the same cut-offs. MASE is scaled by the
    seasonal-naive error of each series' history before the first origin; sMAPE is in [0, 2].

    ``zero_baseline`` adds a constant-zero forecast: for log returns that is the random walk on
    prices, the baseline that matters (Naive on returns repeats yesterday's return)."""
    from statsforecast import StatsForecast
    from statsforecast.models import Naive, SeasonalNaive
    from utilsforecast.evaluation import evaluate
    from utilsforecast.losses import mase, smape

    config = config or BacktestConfig()
    lengths = series.groupby("unique_id").size()
    excluded = sorted(lengths[lengths < config.min_length].index)
    series = series[~series["unique_id"].isin(excluded)]
    if series.empty:
        raise ValueError(
            f"no series is long enough for the backtest ({config.min_length} business days)"
        )
    h, n_windows, step_size = config.horizon, config.windows, config.step
    baselines = StatsForecast(models=[Naive(), SeasonalNaive(SEASON)], freq=FREQ, n_jobs=1)
    base = baselines.cross_validation(df=series, h=h, n_windows=n_windows, step_size=step_size)
    model = build_forecaster(config).cross_validation(
        df=series, h=h, n_windows=n_windows, step_size=step_size, refit=config.refit
    )
    forecasts = base.merge(model.drop(columns=["y"]), on=["unique_id", "ds", "cutoff"])
    if zero_baseline:
        forecasts.insert(forecasts.columns.get_loc(MODEL), "Zero", 0.0)
    history = series[series["ds"] <= forecasts["cutoff"].min()]
    metrics = evaluate(
        forecasts.drop(columns=["cutoff"]),
        metrics=[partial(mase, seasonality=SEASON), smape],
        train_df=history,
    )
    return Backtest(forecasts=forecasts, metrics=metrics, excluded=excluded)


def fit_forecaster(series: pd.DataFrame, config: BacktestConfig | None = None) -> MLForecast:
    """The forecaster trained on every row of ``series`` (what is logged and served)."""
    forecaster = build_forecaster(config or BacktestConfig())
    forecaster.fit(series)
    return forecaster


def forecast(forecaster: MLForecast, tickers: list[str], horizon: int) -> pd.DataFrame:
    """``unique_id, ds, value``: ``horizon`` business days after each ticker's last training day.
    An unknown ticker is a ``KeyError`` naming it and the known ones."""
    known = [str(uid) for uid in forecaster.ts.uids]
    unknown = sorted(set(tickers) - set(known))
    if unknown:
        raise KeyError(f"unknown ticker(s) {unknown}; the forecaster knows {known}")
    frame = forecaster.predict(horizon, ids=list(tickers))
    return frame.rename(columns={MODEL: "value"})[["unique_id", "ds", "value"]]
