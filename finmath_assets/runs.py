"""Runs whose process died: recognised, marked failed, their pool slots freed.

    python -m finmath_assets.runs reap [--runs-are-local]
        (``make run``, before it starts) fail every run whose processes are gone and
        free its concurrency slots; name any live run that holds a pool slot
    python -m finmath_assets.runs fail RUN_ID
        fail one run you know is dead (e.g. one on another machine) and free its slots

A run killed with SIGKILL (out of memory, power loss) stays STARTED and keeps its slot in pool
``duckdb``, so every later run waits on it. A run's processes are the pids its own events were
written from; a pid still counts only if the process now holding it started before the run first
wrote from it (``/proc/<pid>/stat``), so a recycled pid is not mistaken for the run. The same check
answers run monitoring's worker health question (``ProcessCheckingRunLauncher``, dagster.yaml).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEventType, JobFailureData, RunFailureReason
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._core.storage.dagster_run import FINISHED_STATUSES, RunRecord
from dagster._core.storage.runs import SqliteRunStorage

# the statuses a run worker owns; a run killed in one of them stays there
WORKER_STATUSES = [
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
# events written by the run's own processes (the run worker, step subprocesses)
PID_EVENTS = {
    DagsterEventType.RUN_START,
    DagsterEventType.STEP_WORKER_STARTED,
    DagsterEventType.STEP_START,
    DagsterEventType.ENGINE_EVENT,
}
# /proc start times derive from a whole-second boot time: allow for that rounding
START_SLACK_SECONDS = 5.0
PROG = "python -m finmath_assets.runs"


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise RuntimeError("/proc/stat has no btime")


def process_start_time(pid: int) -> float | None:
    """When the live process ``pid`` started (epoch seconds), None if there is none (or only a
    zombie); 0.0 when it is alive but this system has no /proc to tell when it started."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (not Linux): existence is all we can learn
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    if fields[0] in ("Z", "X"):
        return None
    return _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class RunProcesses:
    """What this machine can tell about an unfinished run's processes."""

    run_id: str
    job_name: str
    status: str
    started: float | None
    local: bool  # its processes ran in this machine's pid namespace
    first_seen: dict[int, float] = field(default_factory=dict)  # pid -> first event from it
    alive: tuple[int, ...] = ()

    @property
    def pid(self) -> int | None:
        """The run worker: the first process that wrote for the run."""
        return min(self.first_seen, key=self.first_seen.__getitem__) if self.first_seen else None

    @property
    def dead(self) -> bool:
        return self.local and self.pid is not None and not self.alive

    @property
    def since(self) -> str:
        moment = self.started or (min(self.first_seen.values()) if self.first_seen else None)
        return _utc(moment) if moment else "an unknown time"

    @property
    def reason(self) -> str:
        if self.dead:
            others = sorted(set(self.first_seen) - {self.pid})
            also = f" (nor its step processes {', '.join(map(str, others))})" if others else ""
            return (
                f"its process pid {self.pid} is gone{also}: killed or crashed (out of memory, "
                f"power loss, SIGKILL) while the run was {self.status}, started {self.since}"
            )
        if self.alive:
            return f"its process pid {self.alive[0]} is alive (running since {self.since})"
        if self.pid is None:
            return "it has recorded no process yet"
        return (
            f"its process pid {self.pid} is not on this machine: it ran elsewhere or is gone "
            "(runs in a shared run storage are not judged from here)"
        )


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def runs_are_local(instance: dg.DagsterInstance) -> bool:
    """SQLite run storage lives on this machine's disk: every run of it ran here."""
    return isinstance(instance.run_storage, SqliteRunStorage)


def inspect_run(
    instance: dg.DagsterInstance, record: RunRecord, *, local: bool | None = None
) -> RunProcesses:
    """The processes ``record``'s run wrote from, and which of them are still the run's."""
    run = record.dagster_run
    first_seen: dict[int, float] = {}
    for entry in instance.all_logs(run.run_id, of_type=PID_EVENTS):
        event = entry.dagster_event
        if event is None or event.pid is None:
            continue
        if event.is_engine_event:  # only the process's own "(pid: N)" reports, not a launcher's
            pid_value = (event.engine_event_data.metadata or {}).get("pid")
            if pid_value is None or str(getattr(pid_value, "value", "")) != str(event.pid):
                continue
        first_seen.setdefault(event.pid, entry.timestamp)
    alive = []
    for pid, seen in first_seen.items():
        started = process_start_time(pid)
        if started is not None and started <= seen + START_SLACK_SECONDS:
            alive.append(pid)
    return RunProcesses(
        run_id=run.run_id,
        job_name=run.job_name,
        status=run.status.value,
        started=record.start_time,
        local=runs_are_local(instance) if local is None else local,
        first_seen=first_seen,
        alive=tuple(alive),
    )


def fail_run(instance: dg.DagsterInstance, run_id: str, reason: str) -> bool:
    """Mark ``run_id`` failed with ``reason`` (if still unfinished) and free its pool slots."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise ValueError(f"no run {run_id} in this Dagster instance")
    failed = not run.is_finished
    if failed:
        instance.report_run_failed(
            run,
            message=f"Marked failed by finmath_assets.runs: {reason}.",
            job_failure_data=JobFailureData(
                error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION
            ),
        )
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    return failed


def _slot_holders(instance: dg.DagsterInstance) -> dict[str, list[str]]:
    """run id -> the pools it holds a slot of."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}
    holders: dict[str, list[str]] = {}
    for pool in sorted(storage.get_concurrency_keys()):
        for slot in storage.get_concurrency_info(pool).claimed_slots:
            holders.setdefault(slot.run_id, []).append(pool)
    return holders


def reap(
    instance: dg.DagsterInstance,
    *,
    local: bool | None = None,
    say: Callable[[str], None] = print,
) -> list[RunProcesses]:
    """Fail every unfinished run whose processes are all gone and free its slots (and those
    ended runs still hold); name the live runs a new run would wait on. Returns the runs failed."""
    dead = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=WORKER_STATUSES)):
        found = inspect_run(instance, record, local=local)
        if found.dead and fail_run(instance, found.run_id, f"{found.reason}; pool slots freed"):
            dead.append(found)
            say(f"run {found.run_id} ({found.job_name}) marked FAILED: {found.reason}")
    for run_id, pools in _slot_holders(instance).items():
        record = instance.get_run_record_by_id(run_id)
        found = inspect_run(instance, record, local=local) if record else None
        finished = record is None or record.dagster_run.status in FINISHED_STATUSES
        if finished and not (found and found.alive):  # e.g. failed by its code server
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
            say(f"freed the {', '.join(pools)} pool slot(s) still held by ended run {run_id}")
            continue
        assert found is not None
        kill = f"`kill {found.alive[0]}`" if found.alive else f"`{PROG} fail {run_id}`"
        say(
            f"run {run_id} ({found.job_name}, {found.status}) holds the {', '.join(pools)} pool "
            f"slot: {found.reason}. A run that needs that pool waits until it ends. Wait for it, "
            f"or stop it ({kill}) and start again: a dead run is marked failed and its slot freed."
        )
    return dead


class ProcessCheckingRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher that answers run monitoring's worker health check (the default one
    cannot, so the daemon never fails a run whose worker died) from the run's processes."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        record = self._instance.get_run_record_by_id(run.run_id)
        if record is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, f"no run {run.run_id}")
        found = inspect_run(self._instance, record)
        # anything but FAILED (or RUNNING/SUCCESS) makes monitoring fail the run: unsure is RUNNING
        status = WorkerStatus.FAILED if found.dead else WorkerStatus.RUNNING
        return CheckRunHealthResult(status, found.reason)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    reaper = commands.add_parser("reap", help="fail dead runs, free their slots, name live ones")
    reaper.add_argument(
        "--runs-are-local",
        action="store_true",
        help="judge runs of a shared (PostgreSQL) storage too: only when every run of the "
        "instance runs in this machine or container",
    )
    failer = commands.add_parser("fail", help="fail a run you know is dead, free its slots")
    failer.add_argument("run_id")
    args = parser.parse_args(argv)
    with dg.DagsterInstance.get() as instance:
        if args.command == "fail":
            failed = fail_run(instance, args.run_id, "declared dead by an operator")
            print(
                f"run {args.run_id}: {'marked FAILED' if failed else 'already finished'}; "
                "pool slots freed"
            )
            return 0
        reap(instance, local=True if args.runs_are_local else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
