"""The market half as Dagster runs it: a single-run backfill of trading-day partitions into DuckDB,
re-runs that replace a partition's rows, look-back features, the drop-folder and transaction
sensors with real files, the price checks on bad rows, and the forecasters registered in a real
MLflow store by the promotion rule."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from finmath_assets.core.market.features import FEATURE_COLUMNS
from finmath_assets.core.market.prices import PRICE_COLUMNS, bundled_prices
from finmath_assets.core.market.registry import PRIMARY_METRIC, load_forecaster
from finmath_assets.core.market.transactions import BAD_KINDS, write_transaction_file
from finmath_assets.defs.market.checks import (
    no_duplicate_ticker_date,
    no_negative_volume,
    ohlc_consistent,
)
from finmath_assets.defs.market.partitions import TRADING_DAYS
from finmath_assets.defs.resources import WarehouseResource
from finmath_assets.settings import Settings
from finmath_assets_tests.conftest import project_instance

pytestmark = pytest.mark.slow  # backfills the bundled history with Dagster

START, END = "2011-09-01", "2013-03-01"  # ~390 trading days: enough for a 10-origin backtest
RANGE_TAGS = {
    "dagster/asset_partition_range_start": START,
    "dagster/asset_partition_range_end": END,
}


@dataclass
class Market:
    home: Path
    settings: Settings
    defs: dg.Definitions
    instance: dg.DagsterInstance
    backfill: dg.ExecuteInProcessResult
    backfill_seconds: float
    features_after_backfill: pd.DataFrame

    def sql(self, query: str) -> pd.DataFrame:
        with duckdb.connect(str(self.settings.warehouse_path), read_only=True) as conn:
            return conn.execute(query).fetchdf()

    def run(self, job: str, **kwargs) -> dg.ExecuteInProcessResult:
        return self.defs.resolve_job_def(job).execute_in_process(instance=self.instance, **kwargs)

    def tick(self, sensor: str, cursor: str | None) -> Tick:
        """One evaluation of ``sensor`` from ``cursor``, as the daemon would run it."""
        context = dg.build_sensor_context(
            instance=self.instance, cursor=cursor, definitions=self.defs
        )
        result = self.defs.resolve_sensor_def(sensor)(context)
        if isinstance(result, dg.SkipReason):
            return Tick([], [], result.skip_message, context.cursor)
        if isinstance(result, dg.SensorResult):
            return Tick(
                list(result.run_requests or []),
                list(result.dynamic_partitions_requests or []),
                None,
                context.cursor,
            )
        return Tick(list(result), [], None, context.cursor)


@dataclass
class Tick:
    run_requests: list[dg.RunRequest]
    dynamic_partitions_requests: list
    skip_message: str | None
    cursor: str | None


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    from finmath_assets.definitions import build_definitions

    home = tmp_path_factory.mktemp("market") / "home"
    settings = Settings(
        home=home,
        hf_cache_dir=home.parent / "hf",
        forecast_backtest_windows=10,
        forecast_backtest_refit=False,
    )
    with pytest.MonkeyPatch.context() as monkeypatch, project_instance() as instance:
        monkeypatch.setenv("FINMATH_HOME", str(home))
        defs = build_definitions(settings)
        started = time.perf_counter()
        backfill = defs.resolve_job_def("market_prices_job").execute_in_process(
            instance=instance, tags=RANGE_TAGS
        )
        seconds = time.perf_counter() - started
        assert backfill.success
        forecast = defs.resolve_job_def("forecast_job").execute_in_process(instance=instance)
        assert forecast.success
        with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
            features = conn.execute("SELECT * FROM market.price_features").fetchdf()
        yield Market(home, settings, defs, instance, backfill, seconds, features)


def _bundled_in_range() -> pd.DataFrame:
    bundled = bundled_prices()
    return bundled[
        (bundled["date"] >= date.fromisoformat(START))
        & (bundled["date"] <= date.fromisoformat(END))
    ]


def test_backfill_is_one_run_over_every_partition_with_passing_checks(market: Market) -> None:
    runs = market.instance.get_run_records(dg.RunsFilter(job_name="market_prices_job"))
    assert len(runs) == 1
    key = dg.AssetKey(["market", "market_prices"])
    expected = TRADING_DAYS.get_partition_keys_in_range(dg.PartitionKeyRange(START, END))
    assert sorted(market.instance.get_materialized_partitions(key)) == expected
    stored = market.sql(
        "SELECT count(*) AS n, min(date) AS lo, max(date) AS hi FROM market.market_prices"
    )
    bundled = _bundled_in_range()
    assert int(stored["n"][0]) == len(bundled)
    assert str(stored["lo"][0].date()) == START and str(stored["hi"][0].date()) == END
    assert market.sql("SELECT count(*) AS n FROM market.rejected_market_prices")["n"][0] == 0
    checks = {
        e.asset_check_key.name: e.passed for e in market.backfill.get_asset_check_evaluations()
    }
    assert checks == {
        "no_duplicate_ticker_date": True,
        "ohlc_consistent": True,
        "no_negative_volume": True,
        "partitions_complete": True,
        "quarantine_within_limit": True,  # on rejected_market_prices
    }
    print(f"backfill of {len(expected)} partitions: {market.backfill_seconds:.1f} s")


def test_one_day_rerun_replaces_its_rows_and_recomputes_the_same_features(market: Market) -> None:
    before = market.sql("SELECT count(*) AS n FROM market.market_prices")["n"][0]
    result = market.run("market_prices_job", partition_key=END)
    assert result.success
    assert market.sql("SELECT count(*) AS n FROM market.market_prices")["n"][0] == before
    day = market.sql(f"SELECT * FROM market.price_features WHERE date = '{END}' ORDER BY ticker")
    backfilled = market.features_after_backfill
    backfilled = backfilled[backfilled["date"] == pd.Timestamp(END)].sort_values("ticker")
    assert len(day) == 5  # AAPL, FB, GOOG, IBM, MSFT
    # the one-day run read LOOKBACK_DAYS partitions back: the rolling values are the backfill's
    pd.testing.assert_frame_equal(
        day.reset_index(drop=True)[list(FEATURE_COLUMNS)],
        backfilled.reset_index(drop=True)[list(FEATURE_COLUMNS)],
    )
    assert day["volatility_20d"].notna().all()


def _write_prices(path: Path, rows: list[dict]) -> None:
    pd.DataFrame(rows, columns=list(PRICE_COLUMNS)).to_csv(path, index=False)


def test_a_dropped_file_is_ingested_by_the_sensor_tick_and_bad_bars_quarantined(
    market: Market,
) -> None:
    landing = market.settings.landing_dir / "prices"
    landing.mkdir(parents=True, exist_ok=True)
    _write_prices(landing / "prices_2026-11-28.csv", [])  # a Saturday: not a partition
    weekend = market.tick("price_files", None)
    assert weekend.run_requests == []
    assert "2026-11-28 is not a trading-day partition" in weekend.skip_message
    day = "2026-11-26"  # a Thursday
    good = {"date": day, "open": 10.0, "high": 11.0, "low": 9.5, "close": 10.5, "adj_close": 10.5}
    _write_prices(
        landing / f"prices_{day}.csv",
        [
            {"ticker": "AAPL", **good, "volume": 1000},
            {"ticker": "IBM", **good, "volume": 2000},
            {"ticker": "MSFT", **good, "low": 12.0, "volume": 5},  # low above high
        ],
    )
    (landing / "prices_2026-11-25.csv").write_text("symbol,day,price\nAAPL,2026-11-25,1\n")

    tick = market.tick("price_files", weekend.cursor)
    requested = sorted(r.partition_key for r in tick.run_requests)
    assert requested == ["2026-11-25", day]
    for request in tick.run_requests:
        assert market.run("market_prices_job", partition_key=request.partition_key).success

    stored = market.sql(f"SELECT ticker, volume FROM market.market_prices WHERE date = '{day}'")
    assert sorted(stored["ticker"]) == ["AAPL", "IBM"]
    rejected = market.sql(
        "SELECT source, reasons FROM market.rejected_market_prices ORDER BY source"
    )
    by_source = {
        s: json.loads(r) for s, r in zip(rejected["source"], rejected["reasons"], strict=True)
    }
    assert "missing columns" in by_source["prices_2026-11-25.csv"][0]
    assert any("low 12.0 is above open/close" in r for r in by_source[f"prices_{day}.csv"])

    # the next tick from the advanced cursor has nothing to do
    again = market.tick("price_files", tick.cursor)
    assert again.run_requests == [] and again.skip_message.startswith("no new price files")
    # a corrected file (newer mtime) is requested again and replaces the day's rows
    path = landing / f"prices_{day}.csv"
    _write_prices(path, [{"ticker": "AAPL", **good, "volume": 1234}])
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    corrected = market.tick("price_files", again.cursor)
    assert [r.partition_key for r in corrected.run_requests] == [day]
    result = market.run("market_prices_job", partition_key=day)
    stored = market.sql(f"SELECT ticker, volume FROM market.market_prices WHERE date = '{day}'")
    assert stored.values.tolist() == [["AAPL", 1234]]
    # 2013-03-04 .. 2026-11-24 were never materialised: completeness warns, nothing blocks
    (check,) = [
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_check_key.name == "partitions_complete"
    ]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["missing_partitions"].value > 3000


def test_transaction_files_get_a_dynamic_partition_each(market: Market) -> None:
    landing = market.settings.landing_dir / "transactions"
    for day in (date(2026, 11, 23), date(2026, 11, 24)):
        write_transaction_file(landing, day, seed=market.settings.transactions_seed)
    tick = market.tick("transaction_files", None)
    (add,) = tick.dynamic_partitions_requests
    names = ["transactions_2026-11-23.csv", "transactions_2026-11-24.csv"]
    assert sorted(add.partition_keys) == names
    assert sorted(r.partition_key for r in tick.run_requests) == names
    market.instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
    for name in names:
        assert market.run("transactions_job", partition_key=name).success
    counts = market.sql(
        "SELECT source_file, count(*) AS n FROM market.card_transactions GROUP BY 1 ORDER BY 1"
    )
    assert counts["n"].tolist() == [495, 495]
    rejected = market.sql("SELECT source_file, reasons FROM market.rejected_card_transactions")
    assert len(rejected) == 2 * len(BAD_KINDS)
    # re-running a file replaces its rows
    assert market.run("transactions_job", partition_key=names[0]).success
    assert market.sql("SELECT count(*) AS n FROM market.card_transactions")["n"][0] == 990
    assert market.tick("transaction_files", tick.cursor).run_requests == []


def test_price_checks_fail_on_bad_rows(tmp_path: Path) -> None:
    database = tmp_path / "bad.duckdb"
    with duckdb.connect(str(database)) as conn:
        conn.execute("CREATE SCHEMA market")
        conn.execute(
            "CREATE TABLE market.market_prices (ticker VARCHAR, date TIMESTAMP, open DOUBLE, "
            "high DOUBLE, low DOUBLE, close DOUBLE, volume BIGINT, adj_close DOUBLE)"
        )
        conn.execute(
            "INSERT INTO market.market_prices VALUES "
            "('AAPL', '2012-01-03', 10, 11, 9, 10, 100, 10),"
            "('AAPL', '2012-01-03', 10, 11, 9, 10, 100, 10),"  # repeated bar
            "('IBM', '2012-01-03', 10, 9, 9.5, 10, 100, 10),"  # high below open/close
            "('MSFT', '2012-01-03', 10, 11, 9, 10, -5, 10)"  # negative volume
        )
    warehouse = WarehouseResource(database=str(database))
    duplicate = no_duplicate_ticker_date(warehouse=warehouse)
    assert not duplicate.passed and duplicate.metadata["sample"].value == ["AAPL 2012-01-03 x2"]
    ohlc = ohlc_consistent(warehouse=warehouse)
    assert not ohlc.passed and ohlc.metadata["violations"].value == 1
    assert ohlc.metadata["sample"].value[0].startswith("IBM 2012-01-03")
    volume = no_negative_volume(warehouse=warehouse)
    assert not volume.passed and volume.metadata["sample"].value == ["MSFT 2012-01-03 -5"]


def test_forecasters_are_registered_and_promoted_by_the_rule(market: Market) -> None:
    summary = market.sql("SELECT * FROM market.price_forecaster ORDER BY target")
    assert summary["target"].tolist() == ["log_return", "log_volume"]
    for row in summary.itertuples():
        beats_baseline = getattr(row, PRIMARY_METRIC) < row.backtest_mase_best_baseline
        assert row.promoted == beats_baseline, row.promotion_reason
    volume = summary[summary["target"] == "log_volume"].iloc[0]
    assert volume.promoted and volume.best_baseline in ("Naive", "SeasonalNaive")
    assert volume.excluded_from_backtest == "FB"  # listed since May 2012: too short

    loaded = load_forecaster(
        market.settings.volume_forecaster_name,
        tracking_uri=market.settings.mlflow_tracking_uri_value,
    )
    assert loaded.version == volume.version and loaded.target == "log_volume"
    forecast = loaded.forecast(["AAPL", "FB"], 5)
    assert len(forecast) == 10 and forecast["value"].between(10, 25).all()
    # five business days after the last training day (Friday 2013-03-01)
    assert sorted(forecast["ds"].dt.strftime("%Y-%m-%d").unique()) == [
        "2013-03-04",
        "2013-03-05",
        "2013-03-06",
        "2013-03-07",
        "2013-03-08",
    ]
    with pytest.raises(KeyError, match="ZZZ"):
        loaded.forecast(["ZZZ"], 5)

    report = market.sql("SELECT * FROM market.forecast_backtest_report")
    assert set(report["metric"]) == {"mase", "smape"}
    assert len(report) == 2 * 2 * 4  # targets x metrics x series (FB excluded)
    assert report.loc[report["target"] == "log_volume", "Zero"].isna().all()
    png = market.settings.processed_dir / "reports" / "forecast_backtest.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_landing_cli_generates_the_feed_and_a_tick_ingests_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from finmath_assets import landing

    home = tmp_path / "home"
    (home / "dagster_home").mkdir(parents=True)
    monkeypatch.setenv("FINMATH_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    with pytest.raises(SystemExit):
        landing.main(["generate-transactions", "--days", "0"])
    assert "--days must be at least 1" in capsys.readouterr().err
    assert landing.main(["generate-transactions", "--days", "2", "--end", "2026-11-24"]) == 0
    assert sorted(p.name for p in (home / "landing" / "transactions").iterdir()) == [
        "transactions_2026-11-23.csv",
        "transactions_2026-11-24.csv",
    ]
    assert landing.main(["tick"]) == 0
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM market.card_transactions").fetchone()[0] == 990
    capsys.readouterr()
    # a second tick finds every file already ingested: nothing runs again; generating the same
    # days again keeps the landed files (a rewrite would be ingested again) and adds the new day
    assert landing.main(["tick"]) == 0
    assert "no new transaction files" in capsys.readouterr().out
    landed = home / "landing" / "transactions" / "transactions_2026-11-24.csv"
    mtime = landed.stat().st_mtime_ns
    assert landing.main(["generate-transactions", "--days", "2", "--end", "2026-11-25"]) == 0
    assert landed.stat().st_mtime_ns == mtime
    assert "wrote" in capsys.readouterr().out
    assert landing.main(["tick"]) == 0
    assert "running transactions_job for partition transactions_2026-11-25.csv" in (
        capsys.readouterr().out
    )
