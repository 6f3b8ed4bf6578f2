"""Every quarantine is watched: a landing file rejected whole fails its day's check and reaches
alerts.jsonl and a webhook through the real sensors; the normal feeds pass the default limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from finmath_assets.core.market.prices import PRICE_COLUMNS
from finmath_assets.core.market.transactions import write_transaction_file
from finmath_assets.core.sources import EMBEDDED_DATA_DIR
from finmath_assets.definitions import build_definitions
from finmath_assets.defs.finmath.assets.ingestion import raw_records, validate_raw_records
from finmath_assets.defs.finmath.checks import rejected_records_within_limit
from finmath_assets.settings import Settings
from finmath_assets_tests.conftest import Receiver, read_alerts

pytestmark = pytest.mark.slow  # materialises assets and runs their checks

CHECK = "quarantine_within_limit"
HISTORY_DAY = "2013-03-01"  # the bundled history's last day (a Friday)
BAD_DAY, GOOD_DAY = "2013-03-04", "2013-03-05"  # the next trading days, from landing files
BAR = {"open": 10.0, "high": 11.0, "low": 9.5, "close": 10.5, "adj_close": 10.5}


@dataclass
class Home:
    settings: Settings
    instance: dg.DagsterInstance

    def defs(self, **overrides: object) -> dg.Definitions:
        return build_definitions(self.settings.model_copy(update=overrides))

    def tick(self, defs: dg.Definitions, sensor: str, cursor: str | None = None):
        """One evaluation of ``sensor`` as the daemon runs it; returns (result, new cursor)."""
        # a context manager: resources with secrets (llm, financemath_source) nest a resource
        with dg.build_sensor_context(
            instance=self.instance, cursor=cursor, definitions=defs, resources=defs.resources
        ) as context:
            return defs.resolve_sensor_def(sensor)(context), context.cursor

    def alerts(self) -> list[dict]:
        return read_alerts(self.settings.home / "alerts.jsonl")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> Iterator[Home]:
    path = tmp_path / "home"
    monkeypatch.setenv("FINMATH_HOME", str(path))
    settings = Settings(home=path, hf_cache_dir=tmp_path / "hf", alert_webhook_url=receiver.url)
    with dg.instance_for_test() as instance:
        yield Home(settings, instance)


def _evaluation(result: dg.ExecuteInProcessResult, asset: str) -> dg.AssetCheckEvaluation:
    (evaluation,) = [
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_check_key == dg.AssetCheckKey(dg.AssetKey(["market", asset]), CHECK)
    ]
    return evaluation


def _write_prices(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(PRICE_COLUMNS)).to_csv(path, index=False)


def test_a_rejected_price_file_fails_its_day_and_alerts_file_and_webhook(
    home: Home, receiver: Receiver
) -> None:
    landing = home.settings.landing_dir / "prices"
    landing.mkdir(parents=True)
    (landing / f"prices_{BAD_DAY}.csv").write_text(f"symbol,day,price\nAAPL,{BAD_DAY},1\n")
    _write_prices(
        landing / f"prices_{GOOD_DAY}.csv",
        [
            {"ticker": "AAPL", "date": GOOD_DAY, **BAR, "volume": 1000},
            {"ticker": "IBM", "date": GOOD_DAY, **BAR, "volume": 2000},
        ],
    )
    defs = home.defs()
    job = defs.resolve_job_def("market_prices_job")
    # the history's last day is already in the warehouse, as after `make run`
    assert job.execute_in_process(instance=home.instance, partition_key=HISTORY_DAY).success
    requests, _ = home.tick(defs, "price_files")
    assert [r.partition_key for r in requests] == [BAD_DAY, GOOD_DAY]
    # the bad day runs first: its failure must not be hidden by the good day's later pass
    results = {
        r.partition_key: job.execute_in_process(
            instance=home.instance, partition_key=r.partition_key, tags=r.tags
        )
        for r in requests
    }
    assert all(result.success for result in results.values())  # error severity, not blocking

    bad = _evaluation(results[BAD_DAY], "rejected_market_prices")
    assert not bad.passed and bad.severity == dg.AssetCheckSeverity.ERROR
    assert bad.description.startswith(f"{BAD_DAY}: prices_{BAD_DAY}.csv rejected whole (file: ")
    assert "missing columns" in bad.description
    assert "0 bars stored: not a holiday" in bad.description
    assert bad.metadata["days_with_a_rejected_file"].value == [BAD_DAY]
    good = _evaluation(results[GOOD_DAY], "rejected_market_prices")
    assert good.passed, good.description
    # what made the loss silent before: the empty day passes the completeness check
    (complete,) = [
        e
        for e in results[BAD_DAY].get_asset_check_evaluations()
        if e.asset_check_key.name == "partitions_complete"
    ]
    assert complete.passed

    _, cursor = home.tick(defs, "check_failure_alerts")
    home.tick(defs, "check_failure_alerts", cursor)  # from the cursor: nothing again
    (alert,) = home.alerts()
    assert alert["kind"] == "asset_check_failed"
    assert alert["subject"] == f"market/rejected_market_prices:{CHECK}"
    assert f"{BAD_DAY}: prices_{BAD_DAY}.csv rejected whole" in alert["message"]
    assert alert["details"]["run_id"] == results[BAD_DAY].run_id
    assert alert["details"]["severity"] == "ERROR"
    assert [b["finmath"] for b in receiver.bodies] == [alert]
    text = receiver.bodies[0]["text"]
    assert BAD_DAY in text and f"prices_{BAD_DAY}.csv" in text


def test_rejected_bars_fail_the_default_limit_and_pass_a_looser_one(home: Home) -> None:
    _write_prices(
        home.settings.landing_dir / "prices" / f"prices_{GOOD_DAY}.csv",
        [
            {"ticker": "AAPL", "date": GOOD_DAY, **BAR, "volume": 1000},
            {"ticker": "MSFT", "date": GOOD_DAY, **BAR, "low": 12.0, "volume": 5},
        ],
    )

    def run(**overrides: object) -> dg.AssetCheckEvaluation:
        result = (
            home.defs(**overrides)
            .resolve_job_def("market_prices_job")
            .execute_in_process(instance=home.instance, partition_key=GOOD_DAY)
        )
        return _evaluation(result, "rejected_market_prices")

    strict = run()
    assert not strict.passed
    assert strict.description.startswith(f"{GOOD_DAY}: 1 bars rejected (limit 0), e.g. MSFT ")
    assert run(check_max_rejected_bars_per_day=1).passed


def test_transaction_files_pass_at_the_feeds_one_percent_and_fail_above_the_limit(
    home: Home,
) -> None:
    landing = home.settings.landing_dir / "transactions"
    seed = home.settings.transactions_seed
    normal = write_transaction_file(landing, date(2026, 11, 23), seed=seed).name
    broken = write_transaction_file(landing, date(2026, 11, 24), seed=seed, bad_share=0.05).name
    unreadable = landing / "transactions_2026-11-25.csv"
    unreadable.write_text("id,when\n1,2026-11-25\n")
    defs = home.defs()
    result, _ = home.tick(defs, "transaction_files")
    for request in result.dynamic_partitions_requests:
        home.instance.add_dynamic_partitions(
            request.partitions_def_name, list(request.partition_keys)
        )
    job = defs.resolve_job_def("transactions_job")
    evaluations = {
        r.partition_key: _evaluation(
            job.execute_in_process(instance=home.instance, partition_key=r.partition_key),
            "rejected_card_transactions",
        )
        for r in result.run_requests
    }
    assert sorted(evaluations) == [normal, broken, unreadable.name]
    assert evaluations[normal].passed, evaluations[normal].description
    assert evaluations[normal].metadata["rejected"].value == 5  # one of each broken kind
    assert not evaluations[broken].passed
    assert evaluations[broken].severity == dg.AssetCheckSeverity.ERROR
    assert evaluations[broken].description.startswith(f"{broken}: 25 of 500 rows rejected (5.0%")
    assert "limit 2.0%" in evaluations[broken].description
    assert not evaluations[unreadable.name].passed
    assert evaluations[unreadable.name].description.startswith(
        f"{unreadable.name}: {unreadable.name} rejected whole (file: "
    )


def _financemath_check(home: Home, **overrides: object) -> dg.AssetCheckEvaluation:
    """raw_records and the validation step with only the quarantine check (no sandbox run)."""
    result = dg.materialize(
        [raw_records, validate_raw_records, rejected_records_within_limit],
        resources=home.defs(**overrides).resources,
        instance=home.instance,
    )
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_financemath_quarantine_passes_on_the_snapshot_and_fails_on_a_reject(
    home: Home, tmp_path: Path
) -> None:
    snapshot = _financemath_check(home)
    assert snapshot.passed and snapshot.metadata["rejected"].value == 0  # the snapshot has none
    # one unlabelled record broken: within the blocking reject_rate (1 %), yet watched here
    data = tmp_path / "broken-snapshot"
    data.mkdir()
    (data / "validation.json").write_text((EMBEDDED_DATA_DIR / "validation.json").read_text())
    records = json.loads((EMBEDDED_DATA_DIR / "test.json").read_text())
    records[3]["question"] = "   "
    (data / "test.json").write_text(json.dumps(records))
    broken = _financemath_check(home, local_data_dir=data)
    assert not broken.passed and broken.severity == dg.AssetCheckSeverity.WARN
    qid = records[3]["question_id"]
    assert broken.description.startswith(f"1 records rejected (limit 0), e.g. test[3] {qid}: ")
    assert "question is blank" in broken.description
    assert _financemath_check(home, local_data_dir=data, check_max_rejected_records=1).passed
