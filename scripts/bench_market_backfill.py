"""Backfill of the bundled price history: `make run`'s single-run backfill, command start to
finish, on the project's local instance and on Dagster's default one, vs the same work alone.

    .venv/bin/python scripts/bench_market_backfill.py [--start 2000-03-01] [--end 2013-03-01]
                                                      [--skip-baseline]

1. ``dagster asset materialize --select group:market_data --partition-range START...END`` on a
   fresh home whose dagster.yaml is the project's (the batching event log,
   finmath_assets/event_log.py): the run `make run` launches for a cold home, as a command.
2. The same command on a fresh home whose dagster.yaml leaves the event log to Dagster
   (``SqliteEventLogStorage``, no batching): the baseline (``--skip-baseline`` skips it: ~3 min).
3. The same computation without Dagster: load and validate the bars, compute the features, write
   both tables to DuckDB. What is left between 1 and 3 is Dagster's per-partition bookkeeping.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _without_event_log(config: str) -> str:
    """dagster.yaml minus its event_log_storage block: Dagster's default event log."""
    return re.sub(r"\nevent_log_storage:\n(?:  .*\n)+", "\n", config)


def _backfill(work: Path, name: str, config: str, start: str, end: str) -> tuple[float, str]:
    """The command on a fresh home; (seconds from start to finish, the planning share)."""
    home = work / name
    (home / "dagster_home").mkdir(parents=True)
    (home / "dagster_home" / "dagster.yaml").write_text(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINMATH_", "DAGSTER_"))}
    env.update(FINMATH_HOME=str(home), DAGSTER_HOME=str(home / "dagster_home"), HF_HUB_OFFLINE="1")
    command = [
        *[str(BIN / "dagster"), "asset", "materialize", "--select", "group:market_data"],
        *["--partition-range", f"{start}...{end}", "-m", "finmath_assets.definitions"],
    ]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0 or "RUN_SUCCESS" not in done.stderr:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{name}: the backfill failed")
    return seconds, _planning(done.stderr, started_at=time.time() - seconds)


def _planning(log: str, started_at: float) -> str:
    """Seconds from the command's start to RUN_START (the run's planned events are written)."""
    found = re.search(r"^(\S+ \S+) [+-]\d{4} - dagster - DEBUG - .* - RUN_START", log, re.M)
    if not found:
        return "?"
    from datetime import datetime

    run_start = datetime.fromisoformat(found.group(1)).timestamp()
    return f"{run_start - started_at:.0f}"


def _alone(work: Path, start: str, end: str) -> float:
    import duckdb

    from finmath_assets.core.market.features import price_features
    from finmath_assets.core.market.prices import load_price_window

    started = time.perf_counter()
    last = date.fromisoformat(end) + timedelta(days=1)
    validated, _ = load_price_window(date.fromisoformat(start), last, landing_dir=None)
    tables = {
        "prices": validated.valid,
        "rejected": validated.rejected,
        "features": price_features(validated.valid),
    }
    with duckdb.connect(str(work / "alone.duckdb")) as conn:
        for name, frame in tables.items():
            conn.register("frame", frame)
            conn.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
            conn.unregister("frame")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="2000-03-01")
    parser.add_argument("--end", default="2013-03-01")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    import dagster as dg

    from finmath_assets.defs.market.partitions import TRADING_DAYS

    partitions = len(
        TRADING_DAYS.get_partition_keys_in_range(dg.PartitionKeyRange(args.start, args.end))
    )
    config = (ROOT / "dagster.yaml").read_text()
    work = Path(tempfile.mkdtemp(prefix="finmath-bench-market-"))
    rows = []
    try:
        print(f"{partitions:,} trading-day partitions x 3 assets", flush=True)
        seconds, planning = _backfill(work, "project", config, args.start, args.end)
        rows.append(("project instance (batching event log)", seconds, planning))
        if not args.skip_baseline:
            seconds, planning = _backfill(
                work, "default", _without_event_log(config), args.start, args.end
            )
            rows.append(("Dagster's default SQLite event log (baseline)", seconds, planning))
        rows.append(("the same work without Dagster", _alone(work, args.start, args.end), "-"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| backfill | command start to finish | of which planning |")
    print("|---|---|---|")
    for name, seconds, planning in rows:
        print(f"| {name} | {seconds:.1f} s | {planning} s |")
    print("| target (issue 16) | <= 60 s | |")


if __name__ == "__main__":
    main()
