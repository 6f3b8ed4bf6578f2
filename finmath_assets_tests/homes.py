"""A home as `make run` leaves it, built once per session: the refresh command twice on a copy of
the session's materialised warehouse. ``test_refresh`` reads it; the live tests run the whole
system on it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import mlflow

from finmath_assets.core.sources import CHECKSUM_FILE, EMBEDDED_DATA_DIR
from finmath_assets_tests.conftest import home_env

ROOT = Path(__file__).resolve().parents[1]
HISTORY = "2011-09-01...2013-03-01"  # ~390 trading days: enough for a 10-origin backtest
# `make run`'s command, on a shorter history
REFRESH = [
    *[sys.executable, "-m", "finmath_assets.refresh", "--reap"],
    *["--market-history", HISTORY, "--summary"],
]


@dataclass
class Home:
    root: Path
    data: Path  # FINMATH_LOCAL_DATA_DIR: a copy of the embedded snapshot a test may edit
    first: str = ""  # output of the first refresh
    second: str = ""  # output of the second
    versions_after_first: dict[str, int] = field(default_factory=dict)
    # the state the second refresh left (the live tests change the home later)
    versions_after_second: dict[str, int] = field(default_factory=dict)
    runs_after_second: list[dg.DagsterRun] = field(default_factory=list)

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def env(self) -> dict[str, str]:
        return home_env(
            self.root,
            FINMATH_LOCAL_DATA_DIR=str(self.data),
            FINMATH_FORECAST_BACKTEST_WINDOWS="10",
            FINMATH_FORECAST_BACKTEST_REFIT="false",
            FINMATH_AUTOMATION_INTERVAL_SECONDS="5",  # ticks a test need not wait 30 s for
        )

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.dagster_home))


def registry_client(root: Path) -> mlflow.MlflowClient:
    """A client of the home's MLflow store, its registry included (never the process-global
    one a test may have set)."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def registered_versions(root: Path) -> dict[str, int]:
    """Model name -> number of registered versions in the home's MLflow store."""
    client = registry_client(root)
    return {
        model.name: len(client.search_model_versions(f"name='{model.name}'"))
        for model in client.search_registered_models()
    }


def _refresh(env: dict[str, str], log: Path) -> str:
    done = subprocess.run(REFRESH, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log.write_text(done.stdout + done.stderr)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout


def build_refreshed_home(warehouse: Path, base: Path) -> Home:
    """A user's first `make run` on ``base/home`` (the embedding cache warm: ``warehouse`` is
    copied in), then a second one."""
    root = base / "home"
    (root / "dagster_home").mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", root / "dagster_home" / "dagster.yaml")
    shutil.copy(warehouse, root / "warehouse.duckdb")
    data = base / "data"
    shutil.copytree(EMBEDDED_DATA_DIR, data)
    (data / CHECKSUM_FILE).unlink()  # a snapshot of the user's own: no checksums to keep true
    home = Home(root, data)
    home.first = _refresh(home.env, base / "refresh-1.log")
    home.versions_after_first = registered_versions(root)
    home.second = _refresh(home.env, base / "refresh-2.log")
    home.versions_after_second = registered_versions(root)
    with home.instance() as instance:
        home.runs_after_second = [r.dagster_run for r in instance.get_run_records()]
    return home
