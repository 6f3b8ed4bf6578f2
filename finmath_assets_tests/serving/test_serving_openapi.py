"""A truthful OpenAPI document (issue 14): every route documents what it answers, and
schemathesis (``st run --checks all``) finds nothing against ``uvicorn serving.app:app`` as its
own process, on a copy of the real MLflow store, with and without a champion answer model."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow.tracking import MlflowClient

from finmath_assets.core.market.forecasting import BacktestConfig, fit_forecaster, series_frame
from finmath_assets.core.market.prices import bundled_prices, validate_prices
from finmath_assets.core.market.quarantine import rows_of
from finmath_assets.core.market.registry import log_forecaster
from finmath_assets.settings import Settings
from finmath_assets_tests.conftest import Materialized, service_process

pytestmark = pytest.mark.slow  # the service under uvicorn and schemathesis

ROOT = Path(__file__).resolve().parents[2]
ST_LEFTOVERS = {".schemathesis", ".hypothesis", "schemathesis-report"}  # what st writes in cwd
POST_ROUTES = ["/predict", "/predict/batch", "/ask", "/forecast"]
# the only 5xx a route may answer, each documented: no model, no LLM endpoint, no forecaster
ALLOWED_5XX = {
    ("post", "/predict"): {"503"},
    ("post", "/predict/batch"): {"503"},
    ("post", "/ask"): {"503"},
    ("post", "/forecast"): {"503"},
    ("get", "/ready"): {"503"},
    ("get", "/model"): {"503"},
}
ST_CONFIG = """\
[cache]
enabled = false

[generation]
database = "none"

# the documented 503s (no answer model, no LLM endpoint, no forecaster) are the service's
# answer, not a crash; any other 5xx fails
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "503"]

# 413 refuses a body over FINMATH_SERVING_MAX_BODY_BYTES (documented; JSON Schema cannot say it)
[checks.negative_data_rejection]
expected-statuses = ["400", "404", "405", "413", "415", "422"]
"""
MAX_EXAMPLES = 100  # per operation and phase; each run takes ~5-15 s here


@pytest.fixture(scope="module")
def home(materialized_real: Materialized, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the real store (champion answer model) plus a volume forecaster as champion
    (no return forecaster) and the solved-example bank; no LLM endpoint."""
    home = tmp_path_factory.mktemp("openapi") / "home"
    (home / "processed").mkdir(parents=True)
    shutil.copy(materialized_real.home / "mlflow.db", home / "mlflow.db")
    bank = materialized_real.settings.processed_dir / "solved_examples.parquet"
    shutil.copy(bank, home / "processed" / bank.name)
    settings = Settings(home=home, hf_cache_dir=home.parent / "hf")
    uri = settings.mlflow_tracking_uri_value
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment = client.create_experiment(
            "openapi-tests", artifact_location=(home / "mlartifacts").as_uri()
        )
        prices = validate_prices(rows_of(bundled_prices(), "bundled")).valid
        series = series_frame(prices[prices["ticker"].isin(["AAPL", "IBM"])], "log_volume")
        forecaster = fit_forecaster(series, BacktestConfig(n_estimators=20, threads=1))
        name = settings.forecaster_names["log_volume"]
        with mlflow.start_run(experiment_id=experiment):
            version = log_forecaster(
                forecaster, name=name, target="log_volume", metrics={"backtest_mase": 0.5}
            )
        client.set_registered_model_alias(name, "champion", version)
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    return home


def _clean_env(**extra: str) -> dict[str, str]:
    """``st``'s environment: nothing from FINMATH_, SCHEMATHESIS_, HYPOTHESIS_ or a proxy."""
    drop = ("FINMATH_", "SCHEMATHESIS_", "HYPOTHESIS_")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(drop) and not k.lower().endswith("_proxy")
    }
    return {**env, "NO_PROXY": "*", **extra}


@pytest.fixture(scope="module", params=["champion", "no_model"])
def service(request, home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``champion``: answer model, volume forecaster, no LLM endpoint. ``no_model``: the same
    store but an alias with no version, so ``/predict`` and ``/ready`` answer 503."""
    settings = Settings(home=home, hf_cache_dir=home.parent / "hf")
    env = {}
    if request.param == "no_model":
        env = {"FINMATH_SERVING_WAIT_FOR_MODEL": "true", "FINMATH_SERVING_MODEL_ALIAS": "absent"}
    logs = tmp_path_factory.mktemp(f"openapi-{request.param}")
    with service_process(settings, logs, extra_env=env, probe="/health") as url:
        assert httpx.get(f"{url}/ready").status_code == (
            503 if request.param == "no_model" else 200
        )
        yield url


def test_every_route_documents_its_errors(service: str) -> None:
    doc = httpx.get(f"{service}/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status, response in responses.items():
                if status != "200":  # every refusal has a body model
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.rsplit("/", 1)[1] in schemas
            five = {s for s in responses if s.startswith("5")}
            assert five == ALLOWED_5XX.get((method, path), set()), (method, path, five)
            if path in POST_ROUTES:
                assert {"413", "415", "422"} <= set(responses), path
                ref = responses["422"]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ValidationErrors")
    forecast = doc["paths"]["/forecast"]["post"]["responses"]
    assert forecast["404"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/UnknownTickers"
    )
    tickers = schemas["ForecastRequest"]["properties"]["tickers"]
    assert tickers["uniqueItems"] is True  # the validator's rule, now in the schema


def test_schemathesis_finds_nothing(service: str, tmp_path: Path) -> None:
    """``st run --checks all`` against the real process; ``st`` runs in ``tmp_path`` (its caches
    and the hypothesis directory land there) and talks only to 127.0.0.1."""
    st = Path(sys.executable).with_name("st")
    assert st.exists(), (
        "schemathesis is a dev dependency: pip install -c constraints.txt -e '.[dev]'"
    )
    config = tmp_path / "schemathesis.toml"
    config.write_text(ST_CONFIG)
    before = {name for name in ST_LEFTOVERS if (ROOT / name).exists()}
    started = time.monotonic()
    result = subprocess.run(
        [
            str(st),
            "--config-file",
            str(config),
            "run",
            f"{service}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "14",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--no-color",
            "--output-truncate",
            "true",
        ],
        cwd=tmp_path,
        env=_clean_env(HYPOTHESIS_STORAGE_DIRECTORY=str(tmp_path / ".hypothesis")),
        capture_output=True,
        text=True,
        timeout=90,
    )
    seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "No issues found" in output, output[-6000:]
    operations = re.search(r"Operations:\s+(\d+) selected / (\d+) total", output)
    cases = re.search(r"(\d+) generated, (\d+) passed", output)
    assert operations and operations[1] == operations[2] == "8", output[-3000:]
    assert cases and cases[1] == cases[2] and int(cases[1]) > 300, output[-3000:]
    print(f"schemathesis: {operations[1]} operations, {cases[1]} cases, {seconds:.1f} s")
    assert {name for name in ST_LEFTOVERS if (ROOT / name).exists()} <= before  # all in tmp
