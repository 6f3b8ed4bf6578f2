"""`make run` is change-aware (finmath_assets/refresh.py), and so is the running system: the
refresh command twice on one home, then `dagster-webserver` + `dagster-daemon` on that home,
driven as the UI drives them (GraphQL), with one source record edited in between."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import mlflow
import pytest

from finmath_assets.core.sources import CHECKSUM_FILE, EMBEDDED_DATA_DIR
from finmath_assets.refresh import contiguous_ranges
from finmath_assets_tests.conftest import Materialized, free_port, home_env, process_group

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HISTORY = "2011-09-01...2013-03-01"  # ~390 trading days: enough for a 10-origin backtest
# `make run`'s command, on a shorter history
REFRESH = [
    *[sys.executable, "-m", "finmath_assets.refresh", "--reap"],
    *["--market-history", HISTORY, "--summary"],
]
GRAPHQL_LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
GRAPHQL_TICKS = """
query($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { ticks(limit: 20) { timestamp status runIds } } }
  }
}"""
LOCATION = {"repositoryLocationName": "finmath", "repositoryName": "__repository__"}
DOWNSTREAM = {"validated_records", "question_embeddings", "question_tables", "features"}


@dataclass
class Home:
    root: Path
    data: Path  # FINMATH_LOCAL_DATA_DIR: a copy of the embedded snapshot the test may edit
    first: str  # output of the first refresh
    second: str  # output of the second
    versions_after_first: dict[str, int]

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def env(self) -> dict[str, str]:
        return home_env(
            self.root,
            FINMATH_LOCAL_DATA_DIR=str(self.data),
            FINMATH_FORECAST_BACKTEST_WINDOWS="10",
            FINMATH_FORECAST_BACKTEST_REFIT="false",
            FINMATH_AUTOMATION_INTERVAL_SECONDS="5",  # ticks a test need not wait 30 s for
        )

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.dagster_home))


def _refresh(env: dict[str, str], log: Path) -> str:
    done = subprocess.run(REFRESH, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log.write_text(done.stdout + done.stderr)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout


def _registered_versions(root: Path) -> dict[str, int]:
    uri = f"sqlite:///{root / 'mlflow.db'}"  # the registry too: a test may have set another
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    return {
        model.name: len(client.search_model_versions(f"name='{model.name}'"))
        for model in client.search_registered_models()
    }


@pytest.fixture(scope="module")
def home(
    materialized_real: Materialized, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Home]:
    """A home as a user's first `make run` leaves it (the warehouse's embedding cache is warm:
    copied from the session's materialisation), then refreshed a second time."""
    base = tmp_path_factory.mktemp("refresh")
    root = base / "home"
    (root / "dagster_home").mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", root / "dagster_home" / "dagster.yaml")
    shutil.copy(materialized_real.settings.warehouse_path, root / "warehouse.duckdb")
    data = base / "data"
    shutil.copytree(EMBEDDED_DATA_DIR, data)
    (data / CHECKSUM_FILE).unlink()  # a snapshot of the user's own: no checksums to keep true
    found = Home(root, data, "", "", {})
    found.first = _refresh(found.env, base / "refresh-1.log")
    found.versions_after_first = _registered_versions(root)
    found.second = _refresh(found.env, base / "refresh-2.log")
    yield found


def test_the_first_refresh_builds_what_is_missing(home: Home) -> None:
    assert "finmath: source data version" in home.first and "(first read)" in home.first
    assert "market: backfill 2011-09-01...2013-03-01" in home.first
    assert "forecasting: retraining" in home.first
    assert home.versions_after_first == {
        "finmath-answer-regressor": 1,
        "finmath-volume-forecaster": 1,
        "finmath-return-forecaster": 1,
    }
    with home.instance() as instance:
        event = instance.get_latest_materialization_event(
            dg.AssetKey(["finmath", "question_embeddings"])
        )
        assert event is not None and event.asset_materialization is not None
        assert event.asset_materialization.metadata["texts_embedded"].value == 0  # warm cache


def test_a_second_refresh_rebuilds_retrains_and_registers_nothing(home: Home) -> None:
    assert "(unchanged)" in home.second
    assert "finmath: every asset is up to date: nothing to rebuild" in home.second
    assert "partitions of 2011-09-01...2013-03-01 are up to date" in home.second
    assert "forecasting: inputs unchanged since the last training: nothing to do" in home.second
    assert "refresh: 0 FinanceMath asset(s) rebuilt, 0 price partition(s) backfilled" in (
        home.second
    )
    assert _registered_versions(home.root) == home.versions_after_first
    with home.instance() as instance:
        runs = instance.get_run_records()
        # the first refresh: source, graph, backfill, 5 landing files, forecasters; the second:
        # the source re-read only
        assert len(runs) == 4 + 5 + 1
        assert set(runs[0].dagster_run.asset_selection or ()) == {
            dg.AssetKey(["finmath", "raw_records"])
        }


def test_make_run_ends_with_the_summary(home: Home) -> None:
    for line in (
        f"finmath.{'validated_records':<26} {'1,200':>7} rows",
        "drift report: ",
        "regression quality report: ",
        "embedding dimension: 384",
    ):
        assert line in home.second, line


def test_contiguous_ranges() -> None:
    ordered = ["a", "b", "c", "d", "e", "f"]
    assert contiguous_ranges(ordered, []) == []
    assert contiguous_ranges(ordered, ordered) == [("a", "f")]
    assert contiguous_ranges(ordered, ["e", "a", "b", "d"]) == [("a", "b"), ("d", "e")]


def test_bad_arguments_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    for args, message in [
        (["--market-history", "2011-09-01"], "must be START...END"),
        (["--transaction-days", "0"], "at least 1"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "finmath_assets.refresh", *args],
            cwd=ROOT,
            env={**os.environ, "FINMATH_HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and message in done.stderr


# --- the running system ------------------------------------------------------------------


@dataclass
class System:
    url: str
    instance: dg.DagsterInstance
    logs: list[Path]

    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    def launch(self, *names: str) -> str:
        """What the UI's "Materialize" button sends for the selected assets."""
        params = {
            "selector": {
                **LOCATION,
                "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": ["finmath", name]} for name in names],
            },
            "mode": "default",
            "executionMetadata": {"tags": []},
        }
        launched = self.graphql(GRAPHQL_LAUNCH, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    def automation_ticks_after(self, moment: float) -> list[dict[str, Any]]:
        selector = {**LOCATION, "sensorName": "finmath_automation"}
        found = self.graphql(GRAPHQL_TICKS, {"selector": selector})["sensorOrError"]
        assert found["__typename"] == "Sensor", found
        ticks = found["sensorState"]["ticks"]
        return [t for t in ticks if t["timestamp"] > moment and t["status"] != "STARTED"]

    def wait(self, what: str, probe: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):  # the storage busy with a writer: ask again
                if found := probe():
                    return found
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in self.logs)
                raise AssertionError(f"{what}: not within {timeout} s\n{tails}")
            time.sleep(0.5)

    def finished(self, run_id: str) -> dg.DagsterRun | None:
        run = self.instance.get_run_by_id(run_id)
        return run if run is not None and run.is_finished else None


@pytest.fixture
def system(home: Home) -> Iterator[System]:
    """`dagster-webserver` and `dagster-daemon` as separate processes on the refreshed home."""
    port = free_port()
    logs = [home.root.parent / "dagster-webserver.log", home.root.parent / "dagster-daemon.log"]
    webserver = [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-p", str(port)]
    daemon = [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]
    with (
        process_group(webserver, env=home.env, log_path=logs[0], cwd=ROOT),
        process_group(daemon, env=home.env, log_path=logs[1], cwd=ROOT),
        home.instance() as instance,
    ):
        found = System(f"http://127.0.0.1:{port}", instance, logs)
        found.wait(
            "the webserver",
            lambda: httpx.get(f"{found.url}/server_info", timeout=2).status_code == 200,
            120,
        )
        found.wait(
            "the daemon's sensors",
            lambda: "SENSOR" in instance.get_daemon_heartbeats(),
            120,
        )
        yield found


def _runs_after(system: System, run_id: str) -> list[dg.DagsterRun]:
    ours = system.instance.get_run_by_id(run_id)
    assert ours is not None
    created = system.instance.get_run_record_by_id(run_id).create_timestamp  # type: ignore[union-attr]
    return [
        r.dagster_run
        for r in system.instance.get_run_records()
        if r.create_timestamp > created and r.dagster_run.run_id != run_id
    ]


def _reingest(system: System) -> tuple[str, list[dg.DagsterRun]]:
    """Launch raw_records from the UI; once it succeeded, let the automation sensor tick
    after it; the runs that appeared meanwhile."""
    run_id = system.launch("raw_records")
    run = system.wait("the raw_records run", lambda: system.finished(run_id), 180)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    ended = time.time()
    system.wait("an automation tick", lambda: system.automation_ticks_after(ended), 180)
    return run_id, _runs_after(system, run_id)


def test_live_unchanged_reingest_requests_nothing_then_one_edited_record_one_run(
    home: Home, system: System
) -> None:
    _, after = _reingest(system)
    assert after == [], [r.asset_selection for r in after]

    # one labelled question reworded, as a new snapshot of the source would
    path = home.data / "validation.json"
    records = json.loads(path.read_text())
    records[0]["question"] = records[0]["question"] + " Answer to two decimal places."
    path.write_text(json.dumps(records))

    _, after = _reingest(system)
    assert len(after) == 1, [r.asset_selection for r in after]
    requested = {key.path[-1] for key in after[0].asset_selection or ()}
    assert DOWNSTREAM | {"answer_model", "cv_predictions"} <= requested
    assert "raw_records" not in requested
    run = system.wait("the automation run", lambda: system.finished(after[0].run_id), 400)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    embedded = system.instance.get_latest_materialization_event(
        dg.AssetKey(["finmath", "question_embeddings"])
    )
    assert embedded is not None and embedded.asset_materialization is not None
    assert embedded.asset_materialization.metadata["texts_embedded"].value == 1
    # the model saw different training data: a new version, one
    assert _registered_versions(home.root)["finmath-answer-regressor"] == 2


# --- the same conditions in process, on the same home (after the daemon has stopped) --------

VALIDATION = ["validated_records", "rejected_records"]  # one multi-asset step


def _edited_data(folder: Path, suffix: str) -> Path:
    """The embedded snapshot with one validation question changed."""
    folder.mkdir()
    for split in ("validation", "test"):
        records = json.loads((EMBEDDED_DATA_DIR / f"{split}.json").read_text())
        if split == "validation":
            records[7]["question"] += suffix
        (folder / f"{split}.json").write_text(json.dumps(records))
    return folder


def test_automation_rebuilds_on_changed_data_not_on_a_re_ingest_or_after_a_failed_check(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dg.evaluate_automation_conditions`` on the refreshed home: the three cases, the third
    (a blocking check failing on changed data) included."""
    from finmath_assets.definitions import build_definitions
    from finmath_assets.settings import Settings

    def key(name: str) -> dg.AssetKey:
        return dg.AssetKey(["finmath", name])

    def run(settings: Settings, names: list[str]) -> dg.ExecuteInProcessResult:
        job = build_definitions(settings).resolve_job_def("finmath_job")
        return job.execute_in_process(
            instance=instance, asset_selection=[key(n) for n in names], raise_on_error=False
        )

    monkeypatch.setenv("FINMATH_HOME", str(home.root))
    settings = Settings(
        home=home.root,
        local_data_dir=home.data,
        hf_cache_dir=home.root.parent / "hf",
        model_cache_dir=Path(os.environ["FINMATH_MODEL_CACHE_DIR"]),
    )
    defs = build_definitions(settings)
    downstream = ["question_embeddings", "question_tables", "features", "answer_model"]
    ingest = ["raw_records", *VALIDATION]
    with home.instance() as instance:
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0  # all up to date; the daily re-ingest is not due
        # what the daily tick does: re-ingest identical records -> the same data version
        assert run(settings, ingest).success
        same = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert same.total_requested == 0
        # one record changed and its blocking checks pass: everything after it is requested
        edited = _edited_data(tmp_path / "edited", " Answer to two decimals.")
        assert run(settings.model_copy(update={"local_data_dir": edited}), ingest).success
        after_new = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=same.cursor
        )
        for name in downstream:
            assert after_new.get_num_requested(key(name)) == 1, name
        # the requested children count as handled; then changed data that fails a blocking check
        failing = _edited_data(tmp_path / "failing", " Round to cents.")
        strict = settings.model_copy(
            update={"check_expected_labelled": 7, "local_data_dir": failing}
        )
        assert not run(strict, ingest).success
        after_failure = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=after_new.cursor
        )
        for name in downstream:
            assert after_failure.get_num_requested(key(name)) == 0, name
