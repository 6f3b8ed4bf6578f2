"""Bring every asset up to date, doing only what is missing or changed: what ``make run`` runs.

    python -m finmath_assets.refresh [--market-history START...END] [--transaction-days N]
                                     [--force] [--reap] [--summary]

1. FinanceMath graph: ``raw_records`` is re-read (its data version is the SHA-256 of what it
   read), then one run materialises the assets Dagster reports MISSING or STALE (an input's data
   version or the asset's own code version changed: the UI's "unsynced"). Nothing changed:
   nothing runs after the re-read.
2. Market prices: the partitions of the history range that are missing, or whose latest
   materialisation was made by older code, as one single-run backfill per contiguous range.
3. Landing folders: the synthetic transaction feed (a day whose file exists is kept), then one
   tick of the drop-folder sensors (a file already ingested is skipped).
4. Forecasters: retrained when missing, when their code changed, or when prices were written
   after their last training; a retrain on an unchanged series reuses its
   registered version.

``--force`` materialises everything in range regardless; ``make run`` adds ``--reap`` (dead runs
failed and their slots freed first) and ``--summary`` (the summary printed last), so it is one
process. Each run is an ordinary Dagster run on
DAGSTER_HOME's instance (visible, and re-executable, in the UI).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.loader import LoadingContext

from finmath_assets.defs.constants import KEY_PREFIX, MARKET_HISTORY_START

PROG = "python -m finmath_assets.refresh"
CODE_LOCATION = "finmath_assets.definitions"
DEFAULT_HISTORY = f"{MARKET_HISTORY_START}...2013-03-01"  # the bundled bokeh-sampledata history
RAW_RECORDS = dg.AssetKey([KEY_PREFIX, "raw_records"])
CODE_VERSION_TAG = "dagster/code_version"
DATA_VERSION_TAG = "dagster/data_version"
RECORDS_PAGE = 10_000  # the most Dagster returns per query
PRICE_GROUP = "market_data"
FORECAST_GROUP = "forecasting"


class _Loading(LoadingContext):
    """The minimal loading context Dagster's stale-status resolver needs outside the webserver."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self._instance = instance
        self._loaders: dict = {}

    @property
    def instance(self) -> dg.DagsterInstance:
        return self._instance

    @property
    def loaders(self) -> dict:
        return self._loaders


def code_location() -> ReconstructableRepository:
    """The code location ``dagster ... -m finmath_assets.definitions`` loads: runs launched
    through it carry the same origin as the CLI's (the UI can re-execute them)."""
    return ReconstructableRepository.for_module(
        CODE_LOCATION, "defs", working_directory=os.getcwd()
    )


def _execute(
    instance: dg.DagsterInstance,
    location: ReconstructableRepository,
    keys: Sequence[dg.AssetKey],
    *,
    tags: dict[str, str] | None = None,
    label: str,
) -> None:
    started = time.perf_counter()
    print(f"{label}: materialising {len(keys)} asset(s)", flush=True)
    job = location.get_definition().get_implicit_job_def_for_assets(keys)
    assert job is not None, f"{label}: the selected assets share no partitioning"
    result = dg.execute_job(
        location.get_reconstructable_job(job.name),
        instance,
        asset_selection=list(keys),
        tags=tags,
    )
    seconds = time.perf_counter() - started
    if not result.success:
        raise SystemExit(f"{label}: run {result.run_id} FAILED after {seconds:.1f} s: see its log")
    print(f"{label}: run {result.run_id[:8]} succeeded in {seconds:.1f} s", flush=True)


def stale_or_missing(
    instance: dg.DagsterInstance, asset_graph: BaseAssetGraph, keys: Sequence[dg.AssetKey]
) -> list[dg.AssetKey]:
    """The unpartitioned ``keys`` Dagster reports MISSING or STALE (the UI's "unsynced"), and
    every one of ``keys`` downstream of those: it reads what they will rebuild."""
    resolver = CachingStaleStatusResolver(instance, asset_graph, _Loading(instance))
    chosen = {key for key in keys if resolver.get_status(key) != StaleStatus.FRESH}
    pending = list(chosen)
    while pending:
        for child in asset_graph.get(pending.pop()).child_keys:
            if child in keys and child not in chosen:
                chosen.add(child)
                pending.append(child)
    return [key for key in keys if key in chosen]


def latest_code_version_by_partition(
    instance: dg.DagsterInstance, key: dg.AssetKey
) -> dict[str, str | None]:
    """Partition -> the code version of its newest materialisation (newest first, paged)."""
    found: dict[str, str | None] = {}
    cursor = None
    while True:
        page = instance.fetch_materializations(key, limit=RECORDS_PAGE, cursor=cursor)
        for record in page.records:
            materialization = record.asset_materialization
            if materialization is not None and materialization.partition is not None:
                tags = materialization.tags or {}
                found.setdefault(materialization.partition, tags.get(CODE_VERSION_TAG))
        if not page.has_more:
            return found
        cursor = page.cursor


def partitions_to_backfill(
    instance: dg.DagsterInstance,
    assets: dict[dg.AssetKey, str | None],
    partition_keys: Sequence[str],
) -> list[str]:
    """The ``partition_keys`` that some asset of ``assets`` (key -> its code version) lacks, or
    holds from a materialisation made by another code version."""
    needed: set[str] = set()
    for key, code_version in assets.items():
        latest = latest_code_version_by_partition(instance, key)
        needed |= {p for p in partition_keys if p not in latest or latest[p] != code_version}
    return [p for p in partition_keys if p in needed]


def contiguous_ranges(ordered: Sequence[str], chosen: Sequence[str]) -> list[tuple[str, str]]:
    """``chosen`` (a subset of ``ordered``) as runs of neighbours in ``ordered``: (first, last)."""
    position = {key: i for i, key in enumerate(ordered)}
    ranges: list[tuple[str, str]] = []
    for key in sorted(chosen, key=position.__getitem__):
        if ranges and position[key] == position[ranges[-1][1]] + 1:
            ranges[-1] = (ranges[-1][0], key)
        else:
            ranges.append((key, key))
    return ranges


def _source_version(instance: dg.DagsterInstance) -> str | None:
    records = instance.fetch_materializations(RAW_RECORDS, limit=1).records
    return records[0].asset_materialization.tags.get(DATA_VERSION_TAG) if records else None  # type: ignore[union-attr]


def _latest_record_id(instance: dg.DagsterInstance, keys: Sequence[dg.AssetKey]) -> int:
    """The newest materialisation record id among ``keys``, partitions included."""
    newest = 0
    for key in keys:
        records = instance.fetch_materializations(key, limit=1).records
        if records:
            newest = max(newest, records[0].storage_id)
    return newest


def refresh_finmath(
    instance: dg.DagsterInstance, location: ReconstructableRepository, *, force: bool
) -> list[dg.AssetKey]:
    graph = location.get_definition().asset_graph
    keys = sorted(
        (k for k in graph.materializable_asset_keys if k.path[0] == KEY_PREFIX),
        key=lambda k: k.to_user_string(),
    )
    before = _source_version(instance)
    _execute(instance, location, [RAW_RECORDS], label="finmath: re-read the source")
    after = _source_version(instance)
    state = "first read" if before is None else "unchanged" if before == after else "CHANGED"
    print(f"finmath: source data version {str(after)[:12]} ({state})", flush=True)
    downstream = [k for k in keys if k != RAW_RECORDS]
    todo = downstream if force else stale_or_missing(instance, graph, downstream)
    if not todo:
        print("finmath: every asset is up to date: nothing to rebuild", flush=True)
        return []
    print("finmath: out of date: " + ", ".join(k.path[-1] for k in todo), flush=True)
    _execute(instance, location, todo, label="finmath")
    return todo


def refresh_prices(
    instance: dg.DagsterInstance, location: ReconstructableRepository, history: str, *, force: bool
) -> int:
    """Backfill the missing or outdated partitions of ``history``; how many were run."""
    from finmath_assets.defs.market.partitions import TRADING_DAYS

    start, _, end = history.partition("...")
    keys = TRADING_DAYS.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
    graph = location.get_definition().asset_graph
    assets = {
        key: graph.get(key).code_version
        for key in graph.materializable_asset_keys
        if graph.get(key).group_name == PRICE_GROUP
    }
    todo = keys if force else partitions_to_backfill(instance, assets, keys)
    if not todo:
        print(f"market: all {len(keys):,} partitions of {history} are up to date", flush=True)
        return 0
    for first, last in contiguous_ranges(keys, todo):
        _execute(
            instance,
            location,
            sorted(assets),
            tags={
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
            },
            label=f"market: backfill {first}...{last}",
        )
    return len(todo)


def refresh_landing(days: int) -> None:
    from finmath_assets import landing
    from finmath_assets.settings import Settings

    end = datetime.now(UTC).date() - timedelta(days=1)
    landing.generate_transactions(days, end, Settings().transactions_seed)
    failed = landing.tick()
    if failed:
        raise SystemExit(f"landing: {failed} run(s) failed: see the run logs in the Dagster UI")


def refresh_forecasters(
    instance: dg.DagsterInstance, location: ReconstructableRepository, *, force: bool
) -> list[dg.AssetKey]:
    graph = location.get_definition().asset_graph
    keys = sorted(
        k for k in graph.materializable_asset_keys if graph.get(k).group_name == FORECAST_GROUP
    )
    inputs = sorted({parent for key in keys for parent in graph.get(key).parent_keys} - set(keys))
    reasons = []
    if force:
        reasons.append("--force")
    if stale_or_missing(instance, graph, keys):
        reasons.append("missing or new code")
    if _latest_record_id(instance, inputs) > _latest_record_id(instance, keys):
        reasons.append("prices written since the last training")
    if not reasons:
        print("forecasting: inputs unchanged since the last training: nothing to do", flush=True)
        return []
    print(f"forecasting: retraining ({'; '.join(reasons)})", flush=True)
    _execute(instance, location, keys, label="forecasting")
    return keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--market-history",
        default=DEFAULT_HISTORY,
        help=f"partition range START...END to keep backfilled (default {DEFAULT_HISTORY})",
    )
    parser.add_argument(
        "--transaction-days",
        type=int,
        default=5,
        help="days of the synthetic transaction feed (default 5)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild everything in range")
    parser.add_argument(
        "--reap",
        action="store_true",
        help="first fail dead runs and free their pool slots (python -m finmath_assets.runs reap)",
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="end with the summary (python -m finmath_assets.summary)",
    )
    args = parser.parse_args(argv)
    if "..." not in args.market_history:
        parser.error("--market-history must be START...END, e.g. 2000-03-01...2013-03-01")
    if args.transaction_days < 1:
        parser.error("--transaction-days must be at least 1")
    started = time.perf_counter()
    location = code_location()
    with dg.DagsterInstance.get() as instance:
        if args.reap:
            from finmath_assets.runs import reap

            reap(instance)
        print("== FinanceMath graph: raw records to an evaluated, registered answer model")
        rebuilt = refresh_finmath(instance, location, force=args.force)
        print("== market prices: missing or outdated trading-day partitions of the history")
        backfilled = refresh_prices(instance, location, args.market_history, force=args.force)
        print("== landing folders: the synthetic transaction feed, one tick of the sensors")
        refresh_landing(args.transaction_days)
        print("== forecasters: backtest, register, promote (when their inputs changed)")
        retrained = refresh_forecasters(instance, location, force=args.force)
    print(
        f"refresh: {len(rebuilt)} FinanceMath asset(s) rebuilt, {backfilled:,} price "
        f"partition(s) backfilled, forecasters {'retrained' if retrained else 'unchanged'} "
        f"in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    if args.summary:
        from finmath_assets import summary

        return summary.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
