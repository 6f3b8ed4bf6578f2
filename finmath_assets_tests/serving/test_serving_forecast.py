"""POST /forecast over real HTTP: LightGBM forecasters fitted on the bundled prices, registered in
a real MLflow sqlite store beside the answer model, served by ``uvicorn serving.app:app`` as its
own process. One service is shared by the module; the hot-reload test moves aliases, so it runs
last."""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from finmath_assets.core.market.forecasting import (
    BacktestConfig,
    Target,
    fit_forecaster,
    series_frame,
)
from finmath_assets.core.market.prices import bundled_prices, validate_prices
from finmath_assets.core.market.quarantine import rows_of
from finmath_assets.core.market.registry import load_forecaster, log_forecaster
from finmath_assets.settings import Settings
from finmath_assets_tests.conftest import Materialized, service_process

pytestmark = pytest.mark.slow  # trains forecasters, the service under uvicorn

TICKERS = ["AAPL", "IBM"]  # two of the four bundled tickers keep fitting quick
QUESTION = {"question": "What is 5% of $1,000?", "tables": [], "topic": "Accounting"}


@dataclass
class Registry:
    """A private copy of the real MLflow store, with forecasters registered into it."""

    settings: Settings
    client: MlflowClient
    experiment_id: str
    prices: pd.DataFrame

    @property
    def uri(self) -> str:
        return self.settings.mlflow_tracking_uri_value

    def register(self, target: Target, n_estimators: int, *, name: str | None = None) -> str:
        """Fit ``target`` on the prices, log and register it (as ``name``); the new version."""
        series = series_frame(self.prices, target)
        forecaster = fit_forecaster(series, BacktestConfig(n_estimators=n_estimators, threads=1))
        with mlflow.start_run(experiment_id=self.experiment_id):
            return log_forecaster(
                forecaster,
                name=name or self.settings.forecaster_names[target],
                target=target,
                metrics={"backtest_mase": 0.5, "backtest_mase_best_baseline": 0.6},
            )

    def promote(self, target: Target, version: str) -> None:
        name = self.settings.forecaster_names[target]
        self.client.set_registered_model_alias(name, "champion", version)

    def expected(self, target: Target, tickers: list[str], horizon: int) -> dict:
        """The in-process forecast of the champion: ``{(ticker, iso date): value}``."""
        loaded = load_forecaster(self.settings.forecaster_names[target], tracking_uri=self.uri)
        frame = loaded.forecast(tickers, horizon)
        return {
            (str(uid), pd.Timestamp(ds).date().isoformat()): float(value)
            for uid, ds, value in frame.itertuples(index=False)
        }


@pytest.fixture(scope="module")
def registry(
    materialized_real: Materialized, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """``registry_copy`` for the whole module, plus a volume forecaster v1 as champion and no
    return forecaster at all."""
    home = tmp_path_factory.mktemp("forecast") / "home"
    home.mkdir()
    shutil.copy(materialized_real.home / "mlflow.db", home / "mlflow.db")
    settings = Settings(home=home, hf_cache_dir=home.parent / "hf")
    uri = settings.mlflow_tracking_uri_value
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = client.create_experiment(
        "forecast-tests", artifact_location=(home / "mlartifacts").as_uri()
    )
    prices = validate_prices(rows_of(bundled_prices(), "bundled")).valid
    prices = prices[prices["ticker"].isin(TICKERS)]
    registry = Registry(settings, client, experiment_id, prices)
    registry.promote("log_volume", registry.register("log_volume", 20))
    try:
        yield registry
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


@pytest.fixture(scope="module")
def service(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("forecast-service")
    env = {"FINMATH_SERVING_REFRESH_SECONDS": "0.5"}
    with service_process(registry.settings, logs, extra_env=env) as url:
        yield url


@pytest.fixture
def http(service: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service, timeout=30) as client:
        yield client


def _sample(text: str, metric: str, default: float | None = 0.0, **labels: str) -> float | None:
    """The value of sample ``metric`` whose labels include ``labels`` (``default`` when absent: a
    labelled counter appears at its first increment)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and labels.items() <= sample.labels.items():
                return sample.value
    return default


def _business_days_after(day: str, n: int) -> list[str]:
    start = pd.Timestamp(day) + pd.offsets.BDay(1)
    return [d.date().isoformat() for d in pd.bdate_range(start, periods=n)]


def _by_key(body: dict) -> dict:
    return {(p["ticker"], p["date"]): p["value"] for p in body["forecasts"]}


def test_volume_forecast_is_the_registered_forecasters_forecast(
    http: httpx.Client, registry: Registry
) -> None:
    response = http.post("/forecast", json={"tickers": ["IBM", "AAPL"], "horizon": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    name = registry.settings.volume_forecaster_name
    assert (body["model_name"], body["model_version"]) == (name, "1")
    assert (body["target"], body["horizon"]) == ("log_volume", 5)
    last = registry.prices.groupby("ticker")["date"].max().dt.date.astype(str).to_dict()
    assert body["last_observed"] == {"IBM": last["IBM"], "AAPL": last["AAPL"]} != {}
    points = body["forecasts"]
    assert [p["ticker"] for p in points] == ["IBM"] * 5 + ["AAPL"] * 5  # request order
    for ticker in ("IBM", "AAPL"):
        days = [p["date"] for p in points if p["ticker"] == ticker]
        assert days == _business_days_after(last[ticker], 5)
    for point in points:
        assert "price_ratio" not in point and math.isfinite(point["value"])
        assert point["volume"] == pytest.approx(math.expm1(point["value"]), rel=1e-12)
        assert 1e5 < point["volume"] < 1e9  # shares a day, not log shares
    # no skew: the service's numbers are the in-process forecast of the same version
    expected = registry.expected("log_volume", ["IBM", "AAPL"], 5)
    assert _by_key(body) == pytest.approx(expected, rel=1e-12)


def test_concurrent_forecasts_of_different_tickers_do_not_mix(
    service: str, registry: Registry
) -> None:
    """MLForecast.predict narrows the model's series in place: without the per-forecaster lock,
    concurrent requests for different tickers would read each other's state."""
    cases = [(("AAPL",), 3), (("IBM",), 7), (("IBM", "AAPL"), 2), (("AAPL", "IBM"), 11)]
    expected = {(t, h): registry.expected("log_volume", list(t), h) for t, h in cases}

    def call(case: tuple[tuple[str, ...], int]) -> dict:
        tickers, horizon = case
        response = httpx.post(
            f"{service}/forecast", json={"tickers": tickers, "horizon": horizon}, timeout=30
        )
        assert response.status_code == 200, response.text
        return _by_key(response.json())

    requests = cases * 8
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(call, requests))
    for case, got in zip(requests, answers, strict=True):
        assert got == pytest.approx(expected[case], rel=1e-12)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"horizon": 0}, "horizon"),
        ({"horizon": 61}, "horizon"),
        ({"horizon": "5"}, "horizon"),  # strict: no coercion
        ({"horizon": 2.5}, "horizon"),
        ({"tickers": []}, "tickers"),
        ({"tickers": ["aapl"]}, "tickers"),
        ({"tickers": "AAPL"}, "tickers"),
        ({"tickers": ["AAPL", "AAPL"]}, "repeated"),
        ({"tickers": [f"T{i}" for i in range(21)]}, "tickers"),
        ({"target": "price"}, "target"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_forecast_bodies_get_422_naming_the_field(
    http: httpx.Client, change: dict, field: str
) -> None:
    response = http.post("/forecast", json={"tickers": ["AAPL"], "horizon": 5, **change})
    assert response.status_code == 422
    assert field in str(response.json()["detail"])


def test_unknown_tickers_get_404_naming_them_and_the_known_ones(http: httpx.Client) -> None:
    response = http.post("/forecast", json={"tickers": ["AAPL", "MSFT", "XOM"], "horizon": 5})
    assert response.status_code == 404  # a valid body naming what is not there (issue 14)
    body = response.json()
    assert "unknown ticker(s) ['MSFT', 'XOM']" in body["detail"]
    assert "knows ['AAPL', 'IBM']" in body["detail"]
    assert (body["unknown"], body["known"]) == (["MSFT", "XOM"], ["AAPL", "IBM"])


def test_a_target_without_champion_is_503_and_the_rest_still_serves(
    http: httpx.Client, registry: Registry
) -> None:
    response = http.post(
        "/forecast", json={"tickers": ["AAPL"], "horizon": 5, "target": "log_return"}
    )
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert f"{registry.settings.return_forecaster_name}@champion" in detail
    assert "no champion yet" in detail and "forecast_backtest_report" in detail
    predicted = http.post("/predict", json=QUESTION)
    assert predicted.status_code == 200 and predicted.json()["model_version"] == "1"
    ready = http.get("/ready")
    assert ready.status_code == 200 and ready.json()["model_version"] == "1"
    assert http.post("/forecast", json={"tickers": ["AAPL"], "horizon": 1}).status_code == 200


def test_forecasters_describes_what_is_served(http: httpx.Client, registry: Registry) -> None:
    described = {d["target"]: d for d in http.get("/forecasters").json()}
    volume, returns = described["log_volume"], described["log_return"]
    assert volume["loaded"] and volume["version"] == "1" and volume["alias"] == "champion"
    assert volume["name"] == registry.settings.volume_forecaster_name
    assert volume["tickers"] == TICKERS and set(volume["last_observed"]) == set(TICKERS)
    assert volume["backtest_metrics"] == {"backtest_mase": 0.5, "backtest_mase_best_baseline": 0.6}
    assert volume["loaded_at"] and volume["trained_at"] and volume["last_reload_error"] is None
    assert not returns["loaded"] and returns["version"] is None and returns["tickers"] == []
    assert returns["name"] == registry.settings.return_forecaster_name
    assert "LookupError" in returns["last_reload_error"]
    schema = http.get("/openapi.json").json()["components"]["schemas"]["ForecastRequest"]
    assert schema["properties"]["horizon"]["maximum"] == 60
    assert schema["properties"]["tickers"]["maxItems"] == 20
    assert schema["examples"][0]["tickers"] == ["AAPL", "IBM"]


def test_forecast_metrics_count_by_target_and_outcome(
    http: httpx.Client, registry: Registry
) -> None:
    def counts() -> tuple[str, dict[tuple[str, str], float]]:
        text = http.get("/metrics").text
        keys = [("log_volume", o) for o in ("ok", "unknown_ticker", "error")]
        keys += [("log_return", "no_model")]
        return text, {
            (t, o): _sample(text, "finmath_forecast_requests_total", target=t, outcome=o)
            for t, o in keys
        }

    before_text, before = counts()
    for _ in range(2):
        assert http.post("/forecast", json={"tickers": ["AAPL"], "horizon": 3}).status_code == 200
    assert http.post("/forecast", json={"tickers": ["XOM"], "horizon": 3}).status_code == 404
    assert http.post("/forecast", json={"tickers": ["AAPL"], "horizon": 0}).status_code == 422
    refused = {"tickers": ["AAPL"], "horizon": 3, "target": "log_return"}
    assert http.post("/forecast", json=refused).status_code == 503
    text, after = counts()
    assert {k: after[k] - before[k] for k in after} == {
        ("log_volume", "ok"): 2,
        ("log_volume", "unknown_ticker"): 1,  # the invalid horizon never reached the handler
        ("log_volume", "error"): 0,
        ("log_return", "no_model"): 1,
    }
    seconds = "finmath_forecast_seconds_count"
    assert (
        _sample(text, seconds, target="log_volume")
        - _sample(before_text, seconds, target="log_volume")
        == 3
    )
    name = registry.settings.volume_forecaster_name
    info = "finmath_forecast_model_info"
    assert _sample(text, info, None, target="log_volume", name=name, version="1") == 1
    assert _sample(text, info, None, target="log_return") is None
    # both targets are exported, loaded or not
    assert _sample(text, "finmath_forecast_model_ready", None, target="log_volume") == 1
    assert _sample(text, "finmath_forecast_model_ready", None, target="log_return") == 0


def _wait_for(http: httpx.Client, body: dict, version: str) -> dict:
    deadline = time.monotonic() + 20
    while True:
        response = http.post("/forecast", json=body)
        if response.status_code == 200 and response.json()["model_version"] == version:
            return response.json()
        assert time.monotonic() < deadline, f"version {version} not served: {response.text}"
        time.sleep(0.2)


def test_hot_reload_follows_each_alias_and_refuses_a_wrong_target(
    http: httpx.Client, registry: Registry
) -> None:
    volume = {"tickers": TICKERS, "horizon": 5}
    first = http.post("/forecast", json=volume).json()
    assert first["model_version"] == "1"
    # a new volume version, and a first return forecaster, promoted while the service runs
    registry.promote("log_volume", registry.register("log_volume", 40))
    registry.promote("log_return", registry.register("log_return", 20))
    second = _wait_for(http, volume, "2")
    assert _by_key(second) == pytest.approx(registry.expected("log_volume", TICKERS, 5), rel=1e-12)
    assert _by_key(second) != pytest.approx(_by_key(first), rel=1e-9)  # another model indeed
    returns = _wait_for(http, {**volume, "target": "log_return"}, "1")
    assert _by_key(returns) == pytest.approx(registry.expected("log_return", TICKERS, 5), rel=1e-12)
    for ticker in TICKERS:
        points = [p for p in returns["forecasts"] if p["ticker"] == ticker]
        assert "volume" not in points[0]
        compounded = np.exp(np.cumsum([p["value"] for p in points]))
        np.testing.assert_allclose([p["price_ratio"] for p in points], compounded, rtol=1e-12)
        assert all(0.5 < p["price_ratio"] < 2 for p in points)  # a week of returns
    # a version logged for the other target is refused; version 2 keeps serving
    wrong = registry.register("log_return", 20, name=registry.settings.volume_forecaster_name)
    registry.promote("log_volume", wrong)
    deadline = time.monotonic() + 20
    while True:
        described = {d["target"]: d for d in http.get("/forecasters").json()}
        if described["log_volume"]["last_reload_error"]:
            break
        assert time.monotonic() < deadline, "the wrong-target version was not refused"
        time.sleep(0.2)
    assert "ForecasterMismatchError" in described["log_volume"]["last_reload_error"]
    assert described["log_volume"]["version"] == "2"
    assert http.post("/forecast", json=volume).json()["model_version"] == "2"
    text = http.get("/metrics").text
    assert _sample(text, "finmath_forecast_model_reloads_total", target="log_volume") == 1
    assert _sample(text, "finmath_forecast_model_reloads_total", target="log_return") == 1
    assert _sample(text, "finmath_forecast_model_reload_failures_total", target="log_volume") >= 1
    assert _sample(text, "finmath_forecast_model_info", target="log_volume", version="2") == 1
    assert _sample(text, "finmath_forecast_model_ready", target="log_return") == 1
