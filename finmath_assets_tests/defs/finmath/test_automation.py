"""Asset checks on real runs: the checks pass on the real data, and a failed blocking check stops
its run's downstream steps. The automation that follows data versions is tested on the home
`make run` builds, in process and under the running daemon: test_refresh.py."""

from pathlib import Path

import dagster as dg
import pytest

from finmath_assets.definitions import build_definitions
from finmath_assets.settings import Settings
from finmath_assets_tests.conftest import Materialized

pytestmark = pytest.mark.slow  # materialises the real data

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
