"""The batching event log (finmath_assets/event_log.py) stores what Dagster's own SQLite event
log stores, reads homes written by it, and keeps nothing of a batch that failed."""

import os
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from finmath_assets.event_log import BatchingSqliteEventLogStorage
from finmath_assets_tests.conftest import PROJECT_EVENT_LOG, project_instance

pytestmark = pytest.mark.slow  # Dagster runs on real instances

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-03-01")
RANGE = {
    "dagster/asset_partition_range_start": "2024-01-01",
    "dagster/asset_partition_range_end": "2024-02-29",
}


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def daily(context: dg.AssetExecutionContext) -> None:
    context.log.info(f"{len(context.partition_keys)} days")


@dg.asset(
    partitions_def=DAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[daily],
)
def derived() -> None:
    pass


def _backfill(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = dg.Definitions(assets=[daily, derived]).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, tags=RANGE)
    assert result.success
    return result


def _stored(instance: dg.DagsterInstance, run_id: str) -> dict[str, object]:
    """What the UI and the automation read back: per-partition status, events, latest records."""
    return {
        "partitions": {
            key.to_user_string(): sorted(instance.get_materialized_partitions(key))
            for key in (dg.AssetKey("daily"), dg.AssetKey("derived"))
        },
        "event_types": sorted(
            e.dagster_event.event_type_value
            for e in instance.all_logs(run_id)
            if e.dagster_event is not None
        ),
        "planned": len(
            instance.get_records_for_run(
                run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED
            ).records
        ),
        "status": instance.get_run_by_id(run_id).status,  # type: ignore[union-attr]
    }


def test_a_backfill_stores_the_same_as_dagsters_own_sqlite_event_log() -> None:
    with dg.instance_for_test() as plain:
        assert type(plain.event_log_storage) is SqliteEventLogStorage
        expected = _stored(plain, _backfill(plain).run_id)
    with project_instance() as batching:
        assert isinstance(batching.event_log_storage, BatchingSqliteEventLogStorage)
        assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == "1000"
        got = _stored(batching, _backfill(batching).run_id)
    assert got == expected
    assert len(got["partitions"]["daily"]) == 60  # type: ignore[index]
    assert got["planned"] == 120  # one planned event per partition and asset, as before


def test_it_reads_a_home_written_by_the_default_event_log(tmp_path: Path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as plain:
        run_id = _backfill(plain).run_id
        expected = _stored(plain, run_id)
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides=PROJECT_EVENT_LOG) as batching:
        assert isinstance(batching.event_log_storage, BatchingSqliteEventLogStorage)
        assert _stored(batching, run_id) == expected
        second = _backfill(batching).run_id  # and goes on writing the same files
        assert batching.get_run_by_id(second) is not None
        assert len(batching.get_materialized_partitions(dg.AssetKey("daily"))) == 60


def test_a_failed_batch_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    with project_instance() as instance:
        run_id = _backfill(instance).run_id
        storage = instance.event_log_storage
        assert isinstance(storage, BatchingSqliteEventLogStorage)
        key = dg.AssetKey("daily")
        events = [
            r.event_log_entry
            for r in instance.fetch_materializations(key, limit=5, ascending=True).records
        ]
        before = len(instance.all_logs(run_id))
        records_before = len(instance.fetch_materializations(key, limit=1000).records)
        calls = {"n": 0}
        store_asset_event = storage._store_asset_event

        def fail_on_third(conn, event, event_id):  # the index write of the third event fails
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("disk full")
            return store_asset_event(conn, event, event_id)

        monkeypatch.setattr(storage, "_store_asset_event", fail_on_third)
        with pytest.raises(RuntimeError, match="disk full"):
            storage.store_event_batch(events)
        assert len(instance.all_logs(run_id)) == before
        assert len(instance.fetch_materializations(key, limit=1000).records) == records_before
        monkeypatch.undo()
        storage.store_event_batch(events)  # a good batch goes through afterwards
        assert len(instance.all_logs(run_id)) == before + 5


def test_an_instance_keeps_its_events_in_its_own_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not in $DAGSTER_HOME's: a process may open another home with ``from_config``."""
    config = (Path(__file__).resolve().parents[1] / "dagster.yaml").read_text()
    homes = [tmp_path / "a", tmp_path / "b"]
    for home in homes:
        home.mkdir()
        (home / "dagster.yaml").write_text(config)
    monkeypatch.setenv("DAGSTER_HOME", str(homes[0]))
    with dg.DagsterInstance.from_config(str(homes[1])) as instance:
        assert isinstance(instance.event_log_storage, BatchingSqliteEventLogStorage)
        _backfill(instance)
    assert (homes[1] / "history" / "runs" / "index.db").exists()
    assert not (homes[0] / "history").exists()
