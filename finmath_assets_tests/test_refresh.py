"""`make run` is change-aware (finmath_assets/refresh.py): the refresh command twice on one
home (``homes.py``). The running system on that home is ``live/test_running_system.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from finmath_assets.refresh import contiguous_ranges
from finmath_assets_tests.homes import ROOT, Home

pytestmark = pytest.mark.slow


@pytest.fixture
def home(refreshed_home: Home) -> Home:
    return refreshed_home


def test_the_first_refresh_builds_what_is_missing(home: Home) -> None:
    assert "finmath: source data version" in home.first and "(first read)" in home.first
    assert "market: backfill 2011-09-01...2013-03-01" in home.first
    assert "forecasting: retraining" in home.first
    assert home.versions_after_first == {
        "finmath-answer-regressor": 1,
        "finmath-volume-forecaster": 1,
        "finmath-return-forecaster": 1,
    }
    with home.instance() as instance:  # the first materialisation (the live tests add more)
        (record,) = instance.fetch_materializations(
            dg.AssetKey(["finmath", "question_embeddings"]), limit=1, ascending=True
        ).records
        materialization = record.asset_materialization
        assert materialization is not None
        assert materialization.metadata["texts_embedded"].value == 0  # warm cache


def test_a_second_refresh_rebuilds_retrains_and_registers_nothing(home: Home) -> None:
    assert "(unchanged)" in home.second
    assert "finmath: every asset is up to date: nothing to rebuild" in home.second
    assert "partitions of 2011-09-01...2013-03-01 are up to date" in home.second
    assert "forecasting: inputs unchanged since the last training: nothing to do" in home.second
    assert "refresh: 0 FinanceMath asset(s) rebuilt, 0 price partition(s) backfilled" in (
        home.second
    )
    assert home.versions_after_second == home.versions_after_first
    runs = home.runs_after_second
    # the first refresh: source, graph, backfill, 5 landing files, forecasters; the second: the
    # source re-read only
    assert len(runs) == 4 + 5 + 1
    assert set(runs[0].asset_selection or ()) == {dg.AssetKey(["finmath", "raw_records"])}


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
