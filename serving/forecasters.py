"""The market forecasters served by ``POST /forecast``: one registered model per target, each
optional, each following its registry alias like the answer model (see ``model_state``).

A forecaster that is missing or fails to load never stops the service: ``/forecast`` answers 503
for that target and ``/ready`` (the answer model) is unaffected. A swap is one assignment of a
new mapping, so a request reads its forecaster once and keeps it.

``MLForecast.predict`` is not thread-safe: it narrows the fitted series state to the requested
ids *in place* for the duration of the call (``TimeSeries._maybe_subset``). Each served
forecaster therefore has a lock taken around ``predict`` (in a worker thread, never on the event
loop), and its tickers and last dates are copied at load time rather than read from the model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd

from finmath_assets.core.market.forecasting import Target
from finmath_assets.core.market.registry import LoadedForecaster
from serving.schemas import ForecasterDescription, ForecastPoint, ForecastResponse

log = logging.getLogger(__name__)


class ForecasterMismatchError(RuntimeError):
    """The registered version was logged for another target than the name it is served as."""


class NoForecasterError(LookupError):
    """No forecaster is loaded for the requested target."""


class UnknownTickerError(KeyError):
    """The request names tickers the forecaster was not trained on."""

    def __init__(self, unknown: list[str], known: list[str], model: str) -> None:
        super().__init__(f"unknown ticker(s) {unknown}: {model} knows {known}")
        self.unknown, self.known = unknown, known

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class ServedForecaster:
    forecaster: LoadedForecaster
    tickers: tuple[str, ...]
    last_dates: Mapping[str, date]
    loaded_at: float
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def of(cls, forecaster: LoadedForecaster) -> ServedForecaster:
        return cls(
            forecaster=forecaster,
            tickers=tuple(forecaster.tickers),
            last_dates=dict(forecaster.last_dates),
            loaded_at=time.time(),
        )

    def forecast(self, tickers: list[str], horizon: int) -> pd.DataFrame:
        """``unique_id, ds, value`` (blocking, ~25 ms: call it from a worker thread)."""
        with self.lock:
            return self.forecaster.forecast(tickers, horizon)


def forecast_points(frame: pd.DataFrame, target: Target, tickers: list[str]) -> list[ForecastPoint]:
    """The forecast rows in request order, with the target in natural units: shares for
    ``log_volume``; for ``log_return`` the price relative to the last close (returns compound)."""
    by_ticker = {str(uid): rows for uid, rows in frame.groupby("unique_id", sort=False)}
    points: list[ForecastPoint] = []
    for ticker in tickers:
        rows = by_ticker[ticker].sort_values("ds")
        values = rows["value"].to_numpy(dtype=np.float64)
        if target == "log_volume":
            name, natural = "volume", np.expm1(values)
        else:
            name, natural = "price_ratio", np.exp(np.cumsum(values))
        points.extend(
            ForecastPoint(
                ticker=ticker,
                date=pd.Timestamp(day).date(),
                value=float(value),
                **{name: float(converted)},
            )
            for day, value, converted in zip(rows["ds"], values, natural, strict=True)
        )
    return points


class ForecasterState:
    """The served forecaster of each target; ``refresh`` follows each one's alias."""

    def __init__(
        self,
        names: Mapping[Target, str],
        alias: str,
        load: Callable[[str], LoadedForecaster],
        poll_version: Callable[[str], str | None],
        on_change: Callable[[Target, LoadedForecaster], None] = lambda *_: None,
        on_failure: Callable[[Target], None] = lambda _: None,
    ) -> None:
        self.names = dict(names)
        self.alias = alias
        self._load = load
        self._poll_version = poll_version
        self._on_change = on_change
        self._on_failure = on_failure
        self._lock = threading.Lock()  # one refresh at a time; requests never take it
        self._served: Mapping[Target, ServedForecaster] = {}
        self._errors: dict[Target, Exception] = {}  # the last failure of each target

    @property
    def last_errors(self) -> dict[Target, str]:
        return {t: f"{type(e).__name__}: {e}" for t, e in self._errors.items()}

    def get(self, target: Target) -> ServedForecaster | None:
        return self._served.get(target)

    def _load_checked(self, target: Target) -> LoadedForecaster:
        forecaster = self._load(self.names[target])
        if forecaster.target != target:
            raise ForecasterMismatchError(
                f"{forecaster.name} v{forecaster.version} was logged for target "
                f"{forecaster.target!r}, but {forecaster.name} serves {target!r}"
            )
        return forecaster

    def _swap(self, target: Target, forecaster: LoadedForecaster) -> None:
        self._served = {**self._served, target: ServedForecaster.of(forecaster)}
        self._errors.pop(target, None)
        self._on_change(target, forecaster)

    def load_initial(self) -> None:
        """Load every target's forecaster that has the alias; a failure is kept in
        ``last_errors`` (never raised: the forecasters are optional)."""
        with self._lock:
            for target in self.names:
                try:
                    self._swap(target, self._load_checked(target))
                except Exception as exc:
                    self._errors[target] = exc

    def refresh(self) -> list[Target]:
        """Load and swap in each aliased version that moved; returns the targets swapped. A
        failure keeps that target's old forecaster (if any) serving."""
        swapped: list[Target] = []
        with self._lock:
            for target, name in self.names.items():
                served = self.get(target)
                current = served.forecaster.version if served else None
                try:
                    version = self._poll_version(name)
                    if version is None or version == current:
                        continue
                    log.info(
                        "%s@%s moved to version %s (serving %s)", name, self.alias, version, current
                    )
                    forecaster = self._load_checked(target)
                except Exception as exc:  # must leave the old forecaster serving
                    self._errors[target] = exc
                    self._on_failure(target)
                    log.error("reload of %s failed: %s", name, self.last_errors[target])
                    continue
                self._swap(target, forecaster)
                swapped.append(target)
        return swapped

    def missing_message(self, target: Target) -> str:
        """Why ``target`` has no forecaster, naming ``model@alias``."""
        where = f"{self.names[target]}@{self.alias}"
        error = self._errors.get(target)
        if error is None or isinstance(error, LookupError):
            return (
                f"the {target} forecaster has no champion yet: {where} is not set in the "
                "registry. A forecaster is promoted only when it beats its baselines in the "
                "backtest (see the forecast_backtest_report asset); the service picks it up at "
                "its next poll"
            )
        return f"the {target} forecaster {where} could not be loaded: {self.last_errors[target]}"

    def predict(self, target: Target, tickers: list[str], horizon: int) -> ForecastResponse:
        """The forecast of ``target`` for ``tickers`` (blocking: call from a worker thread)."""
        served = self.get(target)
        if served is None:
            raise NoForecasterError(self.missing_message(target))
        forecaster = served.forecaster
        unknown = sorted(set(tickers) - set(served.tickers))
        if unknown:
            raise UnknownTickerError(
                unknown, sorted(served.tickers), f"{forecaster.name} v{forecaster.version}"
            )
        frame = served.forecast(tickers, horizon)
        return ForecastResponse(
            model_name=forecaster.name,
            model_version=forecaster.version,
            target=target,
            horizon=horizon,
            last_observed={t: served.last_dates[t] for t in tickers},
            forecasts=forecast_points(frame, target, tickers),
        )

    def describe(self) -> list[ForecasterDescription]:
        descriptions = []
        for target, name in self.names.items():
            served = self.get(target)
            f = served.forecaster if served else None
            descriptions.append(
                ForecasterDescription(
                    target=target,
                    name=name,
                    alias=self.alias,
                    loaded=served is not None,
                    version=f.version if f else None,
                    run_id=f.run_id if f else None,
                    backtest_metrics={
                        k: v
                        for k, v in (f.metrics if f else {}).items()
                        if k.startswith("backtest")
                    },
                    trained_at=_iso(f.trained_at / 1000) if f and f.trained_at else None,
                    loaded_at=_iso(served.loaded_at) if served else None,
                    tickers=list(served.tickers) if served else [],
                    last_observed=dict(served.last_dates) if served else {},
                    last_reload_error=self.last_errors.get(target),
                )
            )
        return descriptions


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat()
