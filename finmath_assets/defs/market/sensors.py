"""Drop-folder sensors: a new price or transaction file starts a run of its partition
(alerting sensors are in ``defs.alerts``)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from finmath_assets.core.market.prices import price_file_day
from finmath_assets.core.market.transactions import transaction_file_day
from finmath_assets.defs.constants import MARKET_PREFIX

MARKET_PRICES = dg.AssetKey([MARKET_PREFIX, "market_prices"])
CARD_TRANSACTIONS = dg.AssetKey([MARKET_PREFIX, "card_transactions"])


def _new_files(paths: list[Path], cursor: str | None) -> tuple[list[tuple[Path, int]], str | None]:
    """Files modified after the cursor (a file time, plus the names seen at exactly that time so
    a second file with the same mtime is not skipped), and the advanced cursor."""
    state = json.loads(cursor) if cursor else {"mtime_ns": -1, "names": []}
    new = []
    for path in paths:
        mtime = path.stat().st_mtime_ns
        if mtime > state["mtime_ns"] or (
            mtime == state["mtime_ns"] and path.name not in state["names"]
        ):
            new.append((path, mtime))
    if not new:
        return [], cursor
    latest = max(m for _, m in new)
    names = {p.name for p, m in new if m == latest}
    if latest == state["mtime_ns"]:
        names |= set(state["names"])
    return new, json.dumps({"mtime_ns": latest, "names": sorted(names)})


def _written_since(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str, mtime_ns: int
) -> bool:
    """The partition was materialised after the file was last modified (by another tick, a
    backfill or `make run`): requesting it again would only repeat the work."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    return bool(records) and records[0].timestamp * 1e9 > mtime_ns


def build_price_files_sensor(
    directory: Path,
    job_name: str,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    interval_seconds: int = 60,
) -> dg.SensorDefinition:
    """Requests the trading-day partition of each new or changed ``prices_YYYY-MM-DD.csv``."""

    @dg.sensor(
        name="price_files",
        job_name=job_name,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Ingests each new daily price file dropped in {directory}.",
    )
    def price_files(context: dg.SensorEvaluationContext):
        paths = sorted(directory.glob("prices_*.csv")) if directory.is_dir() else []
        new, cursor = _new_files(paths, context.cursor)
        requests, skipped = [], []
        for path, mtime in new:
            try:
                day = price_file_day(path).isoformat()
            except ValueError as error:
                skipped.append(str(error))
                continue
            if not partitions_def.has_partition_key(day):
                skipped.append(f"{path.name}: {day} is not a trading-day partition (a weekend?)")
                continue
            if _written_since(context.instance, MARKET_PRICES, day, mtime):
                continue
            requests.append(dg.RunRequest(run_key=f"{path.name}@{mtime}", partition_key=day))
        for reason in skipped:
            context.log.warning(reason)
        if cursor != context.cursor:
            context.update_cursor(cursor)
        if not requests:
            return dg.SkipReason("; ".join(skipped) or f"no new price files in {directory}")
        return requests

    return price_files


def build_transaction_files_sensor(
    directory: Path,
    job_name: str,
    partitions_def: dg.DynamicPartitionsDefinition,
    interval_seconds: int = 60,
) -> dg.SensorDefinition:
    """Adds a dynamic partition per new ``transactions_YYYY-MM-DD.csv`` and requests it."""

    @dg.sensor(
        name="transaction_files",
        job_name=job_name,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Ingests each new card-transaction file dropped in {directory}.",
    )
    def transaction_files(context: dg.SensorEvaluationContext):
        paths = sorted(directory.glob("transactions_*.csv")) if directory.is_dir() else []
        new, cursor = _new_files(paths, context.cursor)
        known = set(context.instance.get_dynamic_partitions(partitions_def.name))
        to_add, requests = [], []
        for path, mtime in new:
            try:
                transaction_file_day(path)
            except ValueError as error:
                context.log.warning(str(error))
                continue
            if path.name in known and _written_since(
                context.instance, CARD_TRANSACTIONS, path.name, mtime
            ):
                continue
            if path.name not in known:
                to_add.append(path.name)
            requests.append(dg.RunRequest(run_key=f"{path.name}@{mtime}", partition_key=path.name))
        if cursor != context.cursor:
            context.update_cursor(cursor)
        if not requests:
            return dg.SkipReason(f"no new transaction files in {directory}")
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[partitions_def.build_add_request(to_add)]
            if to_add
            else [],
        )

    return transaction_files
