"""Reuse of the market forecasters: running forecast_job again on unchanged prices registers no
new version; both outputs keep their shape, the backtest read back from the version's run.

The prices are written straight into the warehouse (the bundled history validated as the
ingest asset does), not backfilled: only forecast_job runs, with a 10-origin backtest.
"""

from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from finmath_assets.core.market.prices import load_price_window
from finmath_assets.core.market.registry import BACKTEST_METRICS_ARTIFACT
from finmath_assets.core.registry import TRAINING_KEY_TAG
from finmath_assets.definitions import build_definitions
from finmath_assets.settings import Settings
from finmath_assets_tests.conftest import materialization_metadata

pytestmark = pytest.mark.slow  # materialises forecast_job, fits and registers forecasters

START, END = date(2011, 9, 1), date(2013, 3, 2)  # ~390 trading days, as test_market_assets
TARGETS = ("log_volume", "log_return")


def _run(
    settings: Settings, instance: dg.DagsterInstance
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """forecast_job once: the price_forecaster metadata and both tables."""
    result = (
        build_definitions(settings)
        .resolve_job_def("forecast_job")
        .execute_in_process(instance=instance)
    )
    assert result.success
    metadata = materialization_metadata(result, dg.AssetKey(["market", "price_forecaster"]))
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        summary = conn.execute("SELECT * FROM market.price_forecaster ORDER BY target").fetchdf()
        report = conn.execute("SELECT * FROM market.forecast_backtest_report").fetchdf()
    return metadata, summary, report


def test_an_unchanged_series_reuses_each_forecaster_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("FINMATH_HOME", str(home))
    settings = Settings(
        home=home,
        hf_cache_dir=tmp_path / "hf",
        forecast_backtest_windows=10,  # the plot shows the last 10 origins
        forecast_backtest_refit=False,
    )
    prices = load_price_window(START, END, landing_dir=None)[0].valid
    prices = prices[prices["ticker"].isin(["AAPL", "IBM"])]  # two series: a quicker fit
    with duckdb.connect(str(settings.warehouse_path)) as conn:
        conn.execute("CREATE SCHEMA market")
        conn.register("prices", prices)
        conn.execute("CREATE TABLE market.market_prices AS SELECT * FROM prices")
    uri = settings.mlflow_tracking_uri_value
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    names = settings.forecaster_names

    with dg.instance_for_test() as instance:
        first_meta, first, first_report = _run(settings, instance)
        second_meta, second, second_report = _run(settings, instance)

    assert first_meta["reused"] is False and second_meta["reused"] is True
    for target in TARGETS:
        versions = client.search_model_versions(f"name = '{names[target]}'")
        assert [str(v.version) for v in versions] == ["1"], target
        assert len(versions[0].tags[TRAINING_KEY_TAG]) == 64
        artifacts = {a.path for a in client.list_artifacts(versions[0].run_id)}
        assert BACKTEST_METRICS_ARTIFACT in artifacts
        assert first_meta[f"{target}_reused"] is False and second_meta[f"{target}_reused"] is True
        assert second_meta[f"{target}_version"] == "1"
    # the same shape and numbers; the decision says reused, trained_at is the original training
    assert list(second.columns) == list(first.columns)
    same = [c for c in first.columns if c not in ("promoted", "promotion_reason", "trained_at")]
    pd.testing.assert_frame_equal(second[same], first[same])
    assert not second["promoted"].any()
    assert (
        second["promotion_reason"] == "reused v1: training series and parameters unchanged"
    ).all()
    assert (second["trained_at"] <= first["trained_at"]).all()
    pd.testing.assert_frame_equal(second_report, first_report)
    assert (settings.processed_dir / "reports" / "forecast_backtest.png").exists()
