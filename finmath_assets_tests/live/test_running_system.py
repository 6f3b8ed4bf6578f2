"""The running system, used as its users use it, on the home `make run` made: the Dagster UI in a
real browser, the daemon's automation and drop-folder sensors, the inference service hot-reloading
a new champion under load, and alerts delivered to alerts.jsonl and a webhook.

The tests run in file order on one system (``conftest.system``); each builds on the state the
one before left. Screenshots and process logs: ``build/test-artefacts/live/``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import httpx
import pandas as pd
import pytest

from finmath_assets.core.market.prices import PRICE_COLUMNS
from finmath_assets.settings import Settings
from finmath_assets_tests.conftest import service_process
from finmath_assets_tests.homes import registered_versions, registry_client
from finmath_assets_tests.live.system import ARTEFACTS, LiveSystem

pytestmark = [pytest.mark.slow, pytest.mark.live]

ANSWER_MODEL = "finmath-answer-regressor"
DOWNSTREAM = {"validated_records", "question_embeddings", "question_tables", "features"}
NEW_DAY, BAD_DAY = "2013-03-04", "2013-03-05"  # the trading days after the bundled history
# what one test leaves for the next (they run in file order on one system)
LEFT: dict[str, dg.DagsterRun] = {}


def key(name: str, prefix: str = "finmath") -> dg.AssetKey:
    return dg.AssetKey([prefix, name])


def _rewrite_validation(system: LiveSystem, change) -> None:
    """Apply ``change`` to the labelled records of the home's local data directory, as a new
    snapshot of the source would."""
    path = system.home.data / "validation.json"
    records = json.loads(path.read_text())
    change(records)
    path.write_text(json.dumps(records))


def _automation_runs_after(system: LiveSystem, run: dg.DagsterRun) -> list[dg.DagsterRun]:
    """Once ``run`` has finished: wait for an automation tick after it, then every run created
    after ``run`` (what the daemon launched in reply, and anything else launched meanwhile)."""
    system.wait_for_tick("finmath_automation", time.time())
    record = system.instance.get_run_record_by_id(run.run_id)
    assert record is not None
    return system.runs_created_after(record.create_timestamp.timestamp())


def test_the_ui_shows_lineage_and_checks_and_materializes_raw_records(system: LiveSystem) -> None:
    page = system.page
    with system.step("open the asset lineage"):
        page.goto(f"{system.url}/asset-groups")
        page.get_by_text("Global asset lineage").wait_for()
        for group in ("ingestion", "featurization", "modeling", "monitoring"):
            page.get_by_text(group, exact=True).first.wait_for()
        page.goto(
            f"{system.url}/assets/finmath/raw_records?view=lineage"
            "&lineageScope=downstream&lineageDepth=4"
        )
        for name in ("validated_records", "features", "answer_model", "drift_report"):
            page.get_by_text(name, exact=True).first.wait_for()
        system.screenshot("lineage")

    with system.step("find the FinanceMath checks"):
        page.goto(f"{system.url}/assets/finmath/validated_records?view=checks")
        for check in ("labelled_count", "unique_question_ids", "ground_truth_reproducible"):
            page.get_by_text(check, exact=True).first.wait_for()
        page.get_by_text("labelled_count", exact=True).first.click()
        page.get_by_text("200 labelled records (expected 200)").first.wait_for()
        system.screenshot("check")

    # one labelled question reworded in the source: the launch below ingests a change
    _rewrite_validation(
        system, lambda records: records.__setitem__(0, _reworded(records[0], " (two decimals)"))
    )
    before = time.time()
    with system.step("materialize raw_records through the button and the launchpad"):
        page.goto(f"{system.url}/assets/finmath/raw_records")
        materialize = page.get_by_role("button", name=re.compile(r"\bMaterialize$"))
        # the arrow beside the button opens its menu; "Open launchpad" is the launch dialog
        materialize.locator("xpath=../..").get_by_role("button", name="arrow_drop_down").click()
        page.get_by_role("menuitem", name="Open launchpad").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("No errors").wait_for()
        dialog.get_by_role("button", name="Materialize").click()
        (run,) = system.wait(
            "the launched run", lambda: system.runs_created_after(before) or None, 60
        )
        assert {k.to_user_string() for k in run.asset_selection or ()} == {"finmath/raw_records"}

    with system.step("see the run reach SUCCESS on the Runs page"):
        finished = system.wait_finished(run.run_id, 180)
        assert finished.status == dg.DagsterRunStatus.SUCCESS
        page.goto(f"{system.url}/runs")
        link = page.locator(f"a[href='/runs/{run.run_id}']").first
        # the run's row in the Runs list (a virtualised grid of divs, not a table)
        link.locator("xpath=ancestor::div[contains(@class, 'rowGrid')]").get_by_text(
            "Success"
        ).wait_for()
        page.goto(f"{system.url}/runs/{run.run_id}")
        page.get_by_text("Success").first.wait_for()
        system.screenshot("run")
    LEFT["ui_run"] = finished


def _reworded(record: dict, suffix: str) -> dict:
    return {**record, "question": record["question"] + suffix}


def test_the_daemon_retrains_after_the_ui_launch_and_ignores_an_unchanged_reingest(
    system: LiveSystem,
) -> None:
    assert "ui_run" in LEFT, "the UI launch (the test before) did not succeed"
    run = LEFT["ui_run"]
    with system.step("the daemon's automation requests the chain after raw_records"):
        after = system.wait(
            "an automation run after the UI launch",
            lambda: _automation_runs_after(system, run) or None,
            120,
        )
        assert len(after) == 1, [r.asset_selection for r in after]
        requested = {k.path[-1] for k in after[0].asset_selection or ()}
        assert DOWNSTREAM | {"answer_model", "cv_predictions"} <= requested
        assert "raw_records" not in requested
        chain = system.wait_finished(after[0].run_id, 400)
        assert chain.status == dg.DagsterRunStatus.SUCCESS

    with system.step("one text embedded, a retrain, a promotion only if better"):
        assert system.latest_metadata(key("question_embeddings"))["texts_embedded"] == 1
        assert registered_versions(system.home.root)[ANSWER_MODEL] == 2
        model = system.latest_metadata(key("answer_model"))
        assert model["model_version"] == "2" and model["reused"] is False
        champion_before = model["champion_signed_log_mae_before"]
        better = model["cv_signed_log_mae"] < champion_before
        assert model["promoted"] is (
            better and model["cv_signed_log_mae"] <= model["median_baseline_signed_log_mae"]
        ), model
        client = registry_client(system.home.root)
        champion = client.get_model_version_by_alias(ANSWER_MODEL, "champion").version
        assert str(champion) == ("2" if model["promoted"] else "1")

    with system.step("read the answer model's latest materialisation in the UI"):
        page = system.page
        page.goto(f"{system.url}/assets/finmath/answer_model?view=events")
        page.get_by_text("promotion_reason", exact=True).first.wait_for()
        body = page.locator("body").inner_text()
        assert "model_version\n" in body and f"{model['promotion_reason']}" in body
        assert f"models:/{ANSWER_MODEL}/2" in body
        system.screenshot("answer-model")

    with system.step("an unchanged re-ingest requests nothing"):
        again = system.launch("raw_records")
        finished = system.wait_finished(again, 180)
        assert finished.status == dg.DagsterRunStatus.SUCCESS
        assert _automation_runs_after(system, finished) == []


class Load:
    """A client loop sending ``/predict`` until stopped; counts statuses and versions."""

    def __init__(self, url: str, body: dict) -> None:
        self.url, self.body = url, body
        self.statuses: Counter[int] = Counter()
        self.versions: Counter[str] = Counter()
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = client.post("/predict", json=self.body)
                except httpx.HTTPError as error:
                    self.errors.append(repr(error))
                    continue
                self.statuses[response.status_code] += 1
                if response.status_code == 200:
                    self.versions[response.json()["model_version"]] += 1

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + len(self.errors)


def test_the_service_follows_a_new_champion_under_load_without_an_error(
    system: LiveSystem, real_test: list[dict], tmp_path: Path
) -> None:
    refresh_seconds = 1.0
    record = real_test[0]
    body = {"question": record["question"], "tables": record["tables"], "topic": record["topic"]}
    settings = Settings(home=system.home.root, hf_cache_dir=tmp_path / "hf")
    env = {"FINMATH_SERVING_REFRESH_SECONDS": str(refresh_seconds)}
    with service_process(settings, ARTEFACTS, env) as url:
        system.logs["uvicorn"] = ARTEFACTS / "uvicorn.log"
        client = registry_client(system.home.root)
        with system.step("the service serves the champion"):
            before = str(client.get_model_version_by_alias(ANSWER_MODEL, "champion").version)
            assert httpx.get(f"{url}/model").json()["version"] == before
        load = Load(url, body)
        load.thread.start()
        try:
            with system.step("an operator promotes the other version; /model follows"):
                system.wait("requests under load", lambda: load.requests >= 20, 60)
                target = "1" if before == "2" else "2"
                promoted = time.monotonic()
                client.set_registered_model_alias(ANSWER_MODEL, "champion", target)
                system.wait(
                    f"/model at version {target}",
                    lambda: httpx.get(f"{url}/model").json()["version"] == target,
                    30,
                )
                followed = time.monotonic() - promoted
                counted = load.requests
                system.wait("requests after the swap", lambda: load.requests >= counted + 20, 60)
        finally:
            load.stop.set()
            load.thread.join(30)
    figures = {
        "requests": load.requests,
        "statuses": dict(load.statuses),
        "errors": len(load.errors),
        "versions": dict(load.versions),
        "seconds_to_follow": round(followed, 2),
        "refresh_seconds": refresh_seconds,
    }
    (ARTEFACTS / "hot-reload.json").write_text(json.dumps(figures, indent=2))
    assert load.errors == [] and set(load.statuses) == {200}, figures
    assert set(load.versions) == {before, target}, figures  # answered by both, nothing else


def _write_prices(path: Path, day: str) -> None:
    bar = {"date": day, "open": 10.0, "high": 11.0, "low": 9.5, "close": 10.5, "adj_close": 10.5}
    rows = [{"ticker": t, **bar, "volume": 1000} for t in ("AAPL", "GOOG", "IBM", "MSFT")]
    pd.DataFrame(rows, columns=list(PRICE_COLUMNS)).to_csv(path, index=False)


def _partition_run(system: LiveSystem, partition: str) -> dg.DagsterRun | None:
    runs = system.instance.get_runs(
        filters=dg.RunsFilter(job_name="market_prices_job", tags={"dagster/partition": partition})
    )
    return runs[0] if runs and runs[0].is_finished else None


def test_dropped_price_files_are_ingested_and_a_bad_one_alerts(system: LiveSystem) -> None:
    landing = system.home.root / "landing" / "prices"
    landing.mkdir(parents=True, exist_ok=True)
    # a valid file and one with a wrong header, dropped together: one run each
    _write_prices(landing / f"prices_{NEW_DAY}.csv", NEW_DAY)
    (landing / f"prices_{BAD_DAY}.csv").write_text(f"symbol,day,price\nAAPL,{BAD_DAY},1\n")
    with system.step("the valid file: its partition and its features"):
        run = system.wait("the price_files run", lambda: _partition_run(system, NEW_DAY), 180)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        prices = system.latest_metadata(key("market_prices", "market"), NEW_DAY)
        assert prices["rows_per_source"][f"prices_{NEW_DAY}.csv"] == 4
        system.latest_metadata(key("price_features", "market"), NEW_DAY)

    subject = "market/rejected_market_prices:quarantine_within_limit"
    with system.step("the wrong header: the day's quarantine check fails and alerts"):
        run = system.wait("the bad file's run", lambda: _partition_run(system, BAD_DAY), 180)
        in_file, at_hook = system.wait_for_alerts("asset_check_failed", subject)
        assert len(in_file) == len(at_hook) == 1
        assert f"prices_{BAD_DAY}.csv rejected whole" in in_file[0]["message"]
        assert in_file[0]["details"]["run_id"] == run.run_id


def test_a_failing_blocking_check_stops_the_graph_and_alerts_once(system: LiveSystem) -> None:
    versions = registered_versions(system.home.root)[ANSWER_MODEL]
    embedded = system.instance.get_latest_materialization_event(key("question_embeddings"))
    subject = "finmath/validated_records:labelled_count"
    with system.step("one labelled record removed: validated_records' run fails its check"):
        _rewrite_validation(system, lambda records: records.pop())
        ingest = system.wait_finished(system.launch("raw_records"), 180)
        assert ingest.status == dg.DagsterRunStatus.SUCCESS
        # (the service's predictions of the test before may have the daemon refresh the
        # inference log and the drift report meanwhile: the run that validates is the one)
        (chain,) = system.wait(
            "the automation run after the ingest",
            lambda: (
                [
                    r
                    for r in _automation_runs_after(system, ingest)
                    if key("validated_records") in (r.asset_selection or ())
                ]
                or None
            ),
            120,
        )
        assert system.wait_finished(chain.run_id, 300).status == dg.DagsterRunStatus.FAILURE

    with system.step("one alert at both sinks, and the downstream assets are not built"):
        in_file, at_hook = system.wait_for_alerts("asset_check_failed", subject)
        assert "199 labelled records (expected 200)" in in_file[0]["message"]
        moment = time.time()
        system.wait_for_tick("check_failure_alerts", moment)  # a later tick sends nothing again
        system.wait_for_tick("finmath_automation", moment)  # and automation builds nothing on it
        in_file, at_hook = system.alerts("asset_check_failed", subject)
        assert len(in_file) == len(at_hook) == 1
        assert in_file[0]["details"]["run_id"] == chain.run_id
        assert registered_versions(system.home.root)[ANSWER_MODEL] == versions
        latest = system.instance.get_latest_materialization_event(key("question_embeddings"))
        assert latest is not None and embedded is not None
        assert (latest.run_id, latest.timestamp) == (embedded.run_id, embedded.timestamp)
        runs, hooks = system.alerts("run_failed", "__ASSET_JOB")
        assert [a["details"]["run_id"] for a in runs] == [chain.run_id], runs
        assert len(hooks) == 1
