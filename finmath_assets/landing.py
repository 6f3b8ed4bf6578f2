"""The landing folders from the command line (``make run`` uses both commands).

    python -m finmath_assets.landing generate-transactions [--days 5] [--end YYYY-MM-DD]
        write the seeded synthetic card-transaction feed, one file per day, into
        FINMATH_HOME/landing/transactions (the documented generator, nothing fetched); a day
        whose file exists is kept as it is
    python -m finmath_assets.landing tick
        run one tick of the drop-folder sensors (`price_files`, `transaction_files`) without the
        daemon, and execute the runs they request, in this process, on DAGSTER_HOME's instance

The tick starts without a sensor cursor: both sensors skip a file whose partition was written
after the file last changed, so a tick here and the daemon's later ticks never repeat work.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta

SENSORS = ("price_files", "transaction_files")


def generate_transactions(days: int, end: date, seed: int) -> list[str]:
    from finmath_assets.core.market.transactions import write_transaction_file
    from finmath_assets.settings import Settings

    directory = Settings().landing_dir / "transactions"
    written = []
    for offset in range(days - 1, -1, -1):
        day = end - timedelta(days=offset)
        existing = directory / f"transactions_{day.isoformat()}.csv"
        if existing.exists():  # a landed file is never rewritten: it would be ingested again
            print(f"kept {existing}")
            continue
        path = write_transaction_file(directory, day, seed=seed)
        written.append(str(path))
        print(f"wrote {path}")
    return written


def tick() -> int:
    """Evaluate each landing sensor once and run what it requests; the number of failed runs."""
    import dagster as dg

    from finmath_assets.definitions import build_definitions

    defs = build_definitions()
    failed = 0
    with dg.DagsterInstance.get() as instance:
        for name in SENSORS:
            sensor = defs.resolve_sensor_def(name)
            context = dg.build_sensor_context(instance=instance, definitions=defs)
            result = sensor(context)
            if isinstance(result, dg.SkipReason):
                print(f"{name}: {result.skip_message}")
                continue
            requests = result.run_requests if isinstance(result, dg.SensorResult) else result
            if isinstance(result, dg.SensorResult):
                for add in result.dynamic_partitions_requests or []:
                    instance.add_dynamic_partitions(
                        add.partitions_def_name, list(add.partition_keys)
                    )
            job = defs.resolve_job_def(sensor.job_name)
            for request in requests or []:
                print(f"{name}: running {job.name} for partition {request.partition_key}")
                run = job.execute_in_process(
                    instance=instance,
                    partition_key=request.partition_key,
                    tags=dict(request.tags),
                    raise_on_error=False,
                )
                failed += not run.success
                print(f"{name}: {request.partition_key} {'ok' if run.success else 'FAILED'}")
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finmath_assets.landing", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate-transactions", help="write the synthetic feed")
    generate.add_argument("--days", type=int, default=5, help="days of files (default 5)")
    generate.add_argument(
        "--end",
        type=date.fromisoformat,
        default=datetime.now(UTC).date() - timedelta(days=1),
        help="last day, YYYY-MM-DD (default: yesterday, UTC)",
    )
    generate.add_argument(
        "--seed", type=int, default=None, help="default FINMATH_TRANSACTIONS_SEED"
    )
    commands.add_parser("tick", help="run the drop-folder sensors once and their runs")
    args = parser.parse_args(argv)
    if args.command == "generate-transactions":
        if args.days < 1:
            parser.error("--days must be at least 1")
        from finmath_assets.settings import Settings

        seed = Settings().transactions_seed if args.seed is None else args.seed
        generate_transactions(args.days, args.end, seed)
        return 0
    failed = tick()
    if failed:
        print(f"{failed} run(s) failed: see the run logs in the Dagster UI", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
