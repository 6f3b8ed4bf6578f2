"""Asset checks and declarative automation on real runs: the checks pass on the real data, a
failed blocking check stops its run's downstream steps, and automation rebuilds after changed
data, but not after a re-ingest of identical data or a failed blocking check."""

import json
from pathlib import Path

import dagster as dg
import pytest

from finmath_assets.core.sources import EMBEDDED_DATA_DIR
from finmath_assets.definitions import build_definitions
from finmath_assets.settings import Settings
from finmath_assets_tests.conftest import Materialized, materialize

pytestmark = pytest.mark.slow  # materialises the real data, evaluates automation over it

CHECKS = {
    "reject_rate",
    "unique_question_ids",
    "labelled_count",
    "numeric_cells_parse",
    "embeddings_are_sound",
    "feature_table_is_complete",
    "champion_beats_median_baseline",
    "drift_share_within_limit",
    "ground_truth_reproducible",
    "quarantine_within_limit",  # on rejected_records
}
VALIDATION = ["validated_records", "rejected_records"]  # one multi-asset step


def _key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["finmath", name])


def test_every_check_runs_and_passes_on_the_real_data(materialized_real: Materialized) -> None:
    evaluations = materialized_real.result.get_asset_check_evaluations()
    assert {e.asset_check_key.name for e in evaluations} == CHECKS
    failed = [(e.asset_check_key.name, e.description) for e in evaluations if not e.passed]
    assert failed == []
    by_name = {e.asset_check_key.name: e for e in evaluations}
    share = by_name["numeric_cells_parse"].metadata["share"].value
    assert 0.8 < share < 1.0  # the real tables: ~86 % of cells with a digit parse


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, names: list[str] | None):
    job = defs.resolve_job_def("finmath_job")
    return job.execute_in_process(
        instance=instance,
        asset_selection=None if names is None else [_key(n) for n in names],
        raise_on_error=False,
    )


def test_a_failed_blocking_check_stops_the_downstream_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("FINMATH_HOME", str(home))
    settings = Settings(home=home, hf_cache_dir=tmp_path / "hf", check_expected_labelled=199)
    with dg.instance_for_test() as instance:
        result = _run(build_definitions(settings), instance, None)
        assert not result.success
        evaluation = next(
            e
            for e in result.get_asset_check_evaluations()
            if e.asset_check_key.name == "labelled_count"
        )
        assert not evaluation.passed and "200 labelled records (expected 199)" in (
            evaluation.description or ""
        )
        # the validated table was written, nothing was built on it
        assert instance.get_latest_materialization_event(_key("validated_records"))
        assert instance.get_latest_materialization_event(_key("question_embeddings")) is None
        assert instance.get_latest_materialization_event(_key("answer_model")) is None


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
    warm_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    downstream = ["question_embeddings", "question_tables", "features", "answer_model"]
    ingest = ["raw_records", *VALIDATION]
    with dg.instance_for_test() as instance:
        done = materialize(warm_copy, monkeypatch, instance)  # everything, checks passing
        defs = build_definitions(done.settings)
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0  # all up to date; the daily re-ingest is not due
        # what the daily tick does: re-ingest identical records -> the same data version
        materialize(warm_copy, monkeypatch, instance, selection=ingest)
        same = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert same.total_requested == 0
        # one record changed and its blocking checks pass: everything after it is requested
        edited = _edited_data(tmp_path / "edited", " Answer to two decimals.")
        materialize(warm_copy, monkeypatch, instance, selection=ingest, local_data_dir=edited)
        after_new = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=same.cursor
        )
        for name in downstream:
            assert after_new.get_num_requested(_key(name)) == 1, name
        # the requested children count as handled; then changed data that fails a blocking check
        failing = _edited_data(tmp_path / "failing", " Round to cents.")
        strict = build_definitions(
            done.settings.model_copy(
                update={"check_expected_labelled": 7, "local_data_dir": failing}
            )
        )
        failed_run = _run(strict, instance, ingest)
        assert not failed_run.success
        after_failure = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=after_new.cursor
        )
        for name in downstream:
            assert after_failure.get_num_requested(_key(name)) == 0, name
