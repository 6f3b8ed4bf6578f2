"""Crash safety with real processes: a materialisation killed with SIGKILL mid-step leaves every
table at its last good version and the DuckDB file opening; the next run, started as `make run`
starts it (``python -m finmath_assets.runs reap``, then the CLI), completes, and the dead run is
FAILED with the reason. Under a real ``dagster-daemon run``, run monitoring does the same alone.

Every wait is bounded; on failure the assertion names the log files (kept under pytest's tmp).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import pytest
import yaml
from dagster._core.events import DagsterEventType

from finmath_assets import runs
from finmath_assets_tests.conftest import MATERIALIZE_ALL, home_env, process_group

pytestmark = pytest.mark.slow  # kills real Dagster runs and processes

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REAP = [str(BIN / "python"), "-m", "finmath_assets.runs", "reap"]  # what `make run` does first


def market(partition_range: str) -> list[str]:
    """The Makefile's market backfill over ``partition_range`` (shorter than the real one)."""
    return [
        str(BIN / "dagster"),
        *["asset", "materialize", "--select", "group:market_data"],
        *["--partition-range", partition_range, "-m", "finmath_assets.definitions"],
    ]


@dataclass
class Home:
    """A fresh FINMATH_HOME / DAGSTER_HOME, set up as `make dagster-home` does."""

    root: Path
    logs: list[Path]

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def env(self) -> dict[str, str]:
        return home_env(self.root)

    def log(self, name: str) -> Path:
        path = self.root.parent / f"{name}.log"
        self.logs.append(path)
        return path

    def start(self, command: list[str], name: str) -> subprocess.Popen:
        log = self.log(name).open("w")
        return subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=log)

    def run(self, command: list[str], name: str, timeout: float) -> str:
        """Run ``command`` to the end; its output (also kept in a log)."""
        done = subprocess.run(
            command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        self.log(name).write_text(done.stdout + done.stderr)
        assert done.returncode == 0, self.failure(f"{name} exited {done.returncode}")
        return done.stdout + done.stderr

    def failure(self, what: str) -> str:
        tails = "\n".join(f"--- {p}\n{p.read_text()[-2500:]}" for p in self.logs if p.exists())
        return f"{what}; logs: {', '.join(map(str, self.logs))}\n{tails}"

    def wait(self, what: str, probe: Callable[[], Any], timeout: float) -> Any:
        """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):  # a storage busy with the writer: ask again
                if found := probe():
                    return found
            assert time.monotonic() < deadline, self.failure(f"{what}: not within {timeout} s")
            time.sleep(0.2)

    def query(self, sql: str) -> list[tuple]:
        # read-write, as the next run opens it: replays (or discards) the write-ahead log
        with duckdb.connect(str(self.warehouse)) as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    root = tmp_path / "home"
    (root / "dagster_home").mkdir(parents=True)
    (root / "dagster_home" / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    found = Home(root=root, logs=[])
    yield found
    print(f"crash-safety logs: {', '.join(map(str, found.logs))}")


@pytest.fixture
def instance(home: Home) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.from_config(str(home.dagster_home)) as instance:
        yield instance


def new_run(instance: dg.DagsterInstance, known: set[str]) -> str | None:
    ids = [r.dagster_run.run_id for r in instance.get_run_records()]
    return next((run_id for run_id in ids if run_id not in known), None)


def step_started(instance: dg.DagsterInstance, run_id: str | None, step: str) -> int | None:
    """The pid that started ``step`` in ``run_id``, once it has."""
    if run_id is None:
        return None
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_START).records
    found = [r.event_log_entry.dagster_event for r in records]
    return next((e.pid for e in found if e is not None and e.step_key == step), None)


def slot_holders(instance: dg.DagsterInstance) -> set[str]:
    return {
        s.run_id for s in instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots
    }


def holding_step_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the step of ``run_id`` that holds the duckdb slot, if one does."""
    slots = instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots
    step = next((s.step_key for s in slots if s.run_id == run_id), None)
    return step_started(instance, run_id, step) if step else None


def failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    events = instance.all_logs(run_id, of_type={DagsterEventType.RUN_FAILURE})
    return " ".join(e.dagster_event.message or "" for e in events if e.dagster_event)


def kill_mid_step(
    home: Home, instance: dg.DagsterInstance, command: list[str], step: str, name: str
) -> tuple[str, int]:
    """Start ``command``, SIGKILL it once ``step`` has started; the dead run's id and pid."""
    known = {r.dagster_run.run_id for r in instance.get_run_records()}
    process = home.start(command, name)
    try:
        run_id = home.wait(f"{name}: a run", lambda: new_run(instance, known), 240)
        pid = home.wait(f"{name}: step {step}", lambda: step_started(instance, run_id, step), 240)
        assert pid == process.pid, "the CLI runs its steps in its own process (in_process)"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(30)
    return run_id, pid


def assert_stuck(instance: dg.DagsterInstance, run_id: str) -> None:
    """The problem the reaper solves: the killed run is STARTED and holds the pool slot."""
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
    assert run_id in slot_holders(instance)


MARKET_TABLES = ("market.market_prices", "market.rejected_market_prices", "market.price_features")


def tables(home: Home, names: tuple[str, ...]) -> dict[str, list[tuple]]:
    return {name: home.query(f"SELECT * FROM {name} ORDER BY ALL") for name in names}


def test_killed_market_backfill_keeps_tables_and_the_next_run_completes(
    home: Home, instance: dg.DagsterInstance
) -> None:
    """The market backfill killed in its first step: each table is its previous version or the
    killed run's complete write, never part of it; the next `make run` step completes."""
    first, longer = "2000-03-01...2000-05-31", "2000-03-01...2000-12-29"
    home.run(market(first), "market-first", timeout=300)
    good = tables(home, MARKET_TABLES)

    dead, pid = kill_mid_step(home, instance, market(longer), "ingest_market_prices", "killed")
    assert_stuck(instance, dead)
    after_kill = tables(home, MARKET_TABLES)

    reaped = home.run(REAP, "reap", timeout=120)
    assert f"run {dead} (__ASSET_JOB) marked FAILED: its process pid {pid} is gone" in reaped
    home.run(market(longer), "market-again", timeout=300)

    assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE
    assert f"its process pid {pid} is gone" in failure_message(instance, dead)
    assert not slot_holders(instance)
    final = tables(home, MARKET_TABLES)
    assert final["market.market_prices"] != good["market.market_prices"]  # the longer range
    for name in MARKET_TABLES:
        assert after_kill[name] in (good[name], final[name]), f"{name} is partly written"


def test_killed_embedding_step_keeps_tables_and_the_next_run_completes(
    home: Home, instance: dg.DagsterInstance
) -> None:
    """`make run`'s FinanceMath step killed while it embeds: the finished tables are whole, no
    embedding is half-written, and the next run of that step and its upstream completes (the
    rest of the graph is left out: it only adds minutes, not crash cases)."""
    step = "finmath__question_embeddings"
    process = home.start([str(BIN / "dagster"), *MATERIALIZE_ALL], "finmath-killed")
    try:
        dead = home.wait("a run", lambda: new_run(instance, set()), 240)
        home.wait(
            "embedding under way",
            lambda: any(
                (e.user_message or "").startswith("embedded ") and e.step_key == step
                for e in instance.all_logs(dead)
            ),
            300,
        )
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(30)
    assert_stuck(instance, dead)
    written = {
        name
        for (name,) in home.query(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables"
        )
    }
    assert "finmath.question_embeddings" not in written  # never written: no version yet
    assert home.query("SELECT count(*) FROM finmath.validated_records") == [(1200,)]
    assert home.query("SELECT count(*) FROM finmath.embedding_cache") == [(0,)]

    home.run(REAP, "reap", timeout=120)
    upstream = "+key:finmath/question_embeddings,key:finmath/rejected_records"  # one multi-asset
    again = [str(BIN / "dagster"), "asset", "materialize", "-m", "finmath_assets.definitions"]
    output = home.run([*again, "--select", upstream], "again", 600)
    assert "RUN_SUCCESS" in output

    assert f"its process pid {process.pid} is gone" in failure_message(instance, dead)
    assert not slot_holders(instance)
    assert home.query("SELECT count(*) FROM finmath.question_embeddings") == [(1200,)]
    assert home.query("SELECT count(*) FROM finmath.embedding_cache") == [(1200,)]


# a process that writes the embedding cache twice; the second write stops before its COMMIT
CACHE_WRITER = """
import sys, time
from contextlib import contextmanager
import numpy as np
from finmath_assets.defs.finmath.assets import embeddings
from finmath_assets.defs.resources import WarehouseResource

class PausingConnection:
    def __init__(self, connection):
        self.connection = connection
    def execute(self, sql, *args):
        if sql == "COMMIT":
            print("before COMMIT", flush=True)
            time.sleep(600)
        return self.connection.execute(sql, *args)
    def __getattr__(self, name):
        return getattr(self.connection, name)

warehouse = WarehouseResource(database=sys.argv[1])
embeddings._read_cache(warehouse, [])
embeddings._write_cache(warehouse, "model", ["a", "b"], np.ones((2, 8), dtype=np.float32))
connect = WarehouseResource.get_connection

@contextmanager
def pausing(self):
    with connect(self) as connection:
        yield PausingConnection(connection)

WarehouseResource.get_connection = pausing
hashes = [f"h{i}" for i in range(20000)]
embeddings._write_cache(warehouse, "model", hashes, np.ones((20000, 8), dtype=np.float32))
"""


def test_a_cache_write_killed_before_its_commit_leaves_the_previous_cache(tmp_path: Path) -> None:
    """The embedding cache's write is one transaction: killed after its INSERT, before COMMIT,
    the cache holds exactly its previous rows and the file opens for the next writer."""
    warehouse = tmp_path / "warehouse.duckdb"
    process = subprocess.Popen(
        [sys.executable, "-c", CACHE_WRITER, str(warehouse)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "before COMMIT\n"  # EOF (a crash) fails here
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(30)
    from finmath_assets.defs.finmath.assets import embeddings
    from finmath_assets.defs.resources import WarehouseResource

    resource = WarehouseResource(database=str(warehouse))
    assert sorted(embeddings._read_cache(resource, ["a", "b", "h1"])) == ["a", "b"]
    embeddings._write_cache(resource, "model", ["h1"], np.ones((1, 8), dtype=np.float32))
    assert sorted(embeddings._read_cache(resource, ["a", "b", "h1"])) == ["a", "b", "h1"]


def daemon_instance_config(home: Home, poll_seconds: int) -> None:
    """The project's dagster.yaml plus a run queue (so the daemon, not the caller, launches
    runs) and a shorter monitoring poll (the test's time, not the mechanism)."""
    path = home.dagster_home / "dagster.yaml"
    config = yaml.safe_load(path.read_text())
    config["concurrency"]["runs"] = {"max_concurrent_runs": 1}
    config["run_monitoring"].update(
        poll_interval_seconds=poll_seconds, free_slots_after_run_end_seconds=poll_seconds
    )
    path.write_text(yaml.safe_dump(config))


@contextlib.contextmanager
def daemon(home: Home, instance: dg.DagsterInstance) -> Iterator[subprocess.Popen]:
    command = [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]
    log_path = home.log("dagster-daemon")
    with process_group(command, env=home.env, log_path=log_path, cwd=ROOT) as process:
        home.wait(
            "the daemon's run monitoring",
            lambda: "MONITORING" in instance.get_daemon_heartbeats(),
            120,
        )
        yield process


def test_under_the_daemon_run_monitoring_fails_dead_runs_and_frees_their_slots(
    home: Home, instance: dg.DagsterInstance
) -> None:
    """A run the daemon launched (DefaultRunLauncher, via its code server) whose worker is
    killed, and a CLI run killed beside the daemon: both end FAILED and free their pool slot
    with no reaper."""
    daemon_instance_config(home, poll_seconds=3)
    with daemon(home, instance):
        queued = str(uuid.uuid4())
        home.run(
            [
                *[str(BIN / "dagster"), "job", "launch", "-j", "market_prices_job"],
                *["-w", "workspace.yaml", "--run-id", queued, "--tags"],
                json.dumps(
                    {
                        "dagster/asset_partition_range_start": "2000-03-01",
                        "dagster/asset_partition_range_end": "2000-06-30",
                    }
                ),
            ],
            "job-launch",
            timeout=180,
        )
        worker = home.wait(
            "the daemon's run in a step that holds the duckdb slot",
            lambda: holding_step_pid(instance, queued),
            240,
        )
        os.kill(worker, signal.SIGKILL)
        home.wait(
            "the daemon-launched run failed, its slot freed",
            lambda: (
                instance.get_run_by_id(queued).status == dg.DagsterRunStatus.FAILURE
                and queued not in slot_holders(instance)
            ),
            60,
        )
        crash = " ".join(e.message for e in instance.all_logs(queued) if e.message)
        assert "signal 9 (SIGKILL)" in crash or f"pid {worker} is gone" in crash

        dead, pid = kill_mid_step(
            home, instance, market("2000-03-01...2000-06-30"), "ingest_market_prices", "cli-killed"
        )
        home.wait(
            "run monitoring failed the CLI run, its slot freed",
            lambda: (
                f"its process pid {pid} is gone" in failure_message(instance, dead)
                and dead not in slot_holders(instance)
            ),
            60,
        )

        # nothing left for `make run`'s reaper: the daemon did it all
        assert "marked FAILED" not in home.run(REAP, "reap", timeout=120)


# -- the judgement itself, in process: live, dead and recycled pids ---------------------------


def fake_run(instance: dg.DagsterInstance, pid: int, started: float, pool_slot: bool) -> str:
    """A STARTED run whose worker wrote RUN_START from ``pid`` at ``started``."""
    run = instance.add_run(dg.DagsterRun(job_name="crash_test", run_id=str(uuid.uuid4())))
    event = dg.DagsterEvent(DagsterEventType.RUN_START.value, "crash_test", pid=pid)
    instance.handle_new_event(
        dg.EventLogEntry(
            error_info=None,
            level="DEBUG",
            user_message="",
            run_id=run.run_id,
            timestamp=started,
            dagster_event=event,
        )
    )
    if pool_slot:
        instance.event_log_storage.initialize_concurrency_limit_to_default("duckdb")
        instance.event_log_storage.claim_concurrency_slot("duckdb", run.run_id, "a_step")
    return run.run_id


@pytest.fixture
def sleeper() -> Iterator[int]:
    process = subprocess.Popen(["sleep", "120"])
    yield process.pid
    process.kill()
    process.wait(10)


def test_the_reaper_fails_gone_and_recycled_pids_and_names_live_runs(sleeper: int) -> None:
    with dg.instance_for_test(
        overrides={"concurrency": {"pools": {"default_limit": 1}}}
    ) as instance:
        started = runs.process_start_time(sleeper)
        assert started is not None and abs(started - time.time()) < 30
        live = fake_run(instance, sleeper, started + 1, pool_slot=True)
        # the same pid, but the run wrote from it a minute before this process existed
        recycled = fake_run(instance, sleeper, started - 60, pool_slot=False)
        gone = fake_run(instance, 2**22 + 1, time.time(), pool_slot=False)  # above pid_max
        said: list[str] = []
        dead = runs.reap(instance, say=said.append)

        assert {d.run_id for d in dead} == {recycled, gone}
        assert instance.get_run_by_id(live).status == dg.DagsterRunStatus.STARTED
        assert f"its process pid {sleeper} is gone" in failure_message(instance, recycled)
        (blocking,) = [line for line in said if live in line]
        assert f"pid {sleeper} is alive" in blocking and f"`kill {sleeper}`" in blocking
        assert "holds the duckdb pool slot" in blocking

        # a run failed by someone else (its code server) that still holds its slot
        instance.event_log_storage.free_concurrency_slots_for_run(live)
        ended = fake_run(instance, 2**22 + 3, time.time(), pool_slot=True)
        instance.report_run_failed(instance.get_run_by_id(ended))
        assert runs.reap(instance, say=said.append) == []
        assert ended not in slot_holders(instance)

        # a shared (PostgreSQL) storage: not judged from here, only reported
        elsewhere = fake_run(instance, 2**22 + 2, time.time(), pool_slot=True)
        said.clear()
        assert runs.reap(instance, local=False, say=said.append) == []
        (line,) = [line for line in said if elsewhere in line]
        assert "not on this machine" in line and f"fail {elsewhere}" in line
        assert runs.fail_run(instance, elsewhere, "declared dead by an operator")
        assert elsewhere not in slot_holders(instance)


def test_the_instance_config_turns_on_run_monitoring() -> None:
    for path in (ROOT / "dagster.yaml", ROOT / "docker" / "dagster" / "dagster.yaml"):
        monitoring = yaml.safe_load(path.read_text())["run_monitoring"]
        assert monitoring["enabled"] and monitoring["free_slots_after_run_end_seconds"] > 0
    local = yaml.safe_load((ROOT / "dagster.yaml").read_text())["run_launcher"]
    assert (local["module"], local["class"]) == (
        "finmath_assets.runs",
        "ProcessCheckingRunLauncher",
    )
