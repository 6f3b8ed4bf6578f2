"""Shared fixtures: the real data, the real MiniLM model, and one real materialisation."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# No hub access in tests, ever: set before datasets / huggingface_hub are imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
# One ONNX export of the embedding model for the whole session (every test home shares it),
# unless the caller points at an existing one.
os.environ.setdefault("FINMATH_MODEL_CACHE_DIR", tempfile.mkdtemp(prefix="finmath-test-models-"))

import dagster as dg
import duckdb
import httpx
import pandas as pd
import pytest

from finmath_assets.core.embeddings import Embedder
from finmath_assets.core.sources import EMBEDDED_DATA_DIR
from finmath_assets.settings import Settings

# Fixtures that build the real graph: a test asking for one is slow, marked or not, so a new test
# on them cannot slip into `make test-fast` (pytest -m "not slow").
SLOW_FIXTURES = {"materialized_real", "warm_copy", "registry_copy", "refreshed_home"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


# the event log dagster.yaml configures (finmath_assets/event_log.py): tests run on the storage
# the project runs on
PROJECT_EVENT_LOG = {
    "event_log_storage": {
        "module": "finmath_assets.event_log",
        "class": "BatchingSqliteEventLogStorage",
    }
}


def home_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of a process on the home ``root`` (FINMATH_HOME, DAGSTER_HOME under it),
    with none of this process's FINMATH_/DAGSTER_ variables and the session's one ONNX export
    (as a user's model cache would be); ``extra`` are more FINMATH_* values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINMATH_", "DAGSTER_"))}
    env.update(
        FINMATH_HOME=str(root),
        DAGSTER_HOME=str(root / "dagster_home"),
        HF_HUB_OFFLINE="1",
        FINMATH_MODEL_CACHE_DIR=os.environ["FINMATH_MODEL_CACHE_DIR"],
        **extra,
    )
    return env


def project_instance(**overrides: object) -> contextlib.AbstractContextManager[dg.DagsterInstance]:
    """``dg.instance_for_test`` with the project's event log storage."""
    return dg.instance_for_test(overrides={**PROJECT_EVENT_LOG, **overrides})


@pytest.fixture(scope="session")
def real_validation() -> list[dict]:
    return json.loads((EMBEDDED_DATA_DIR / "validation.json").read_text())


@pytest.fixture(scope="session")
def real_test() -> list[dict]:
    return json.loads((EMBEDDED_DATA_DIR / "test.json").read_text())


@pytest.fixture(scope="session")
def real_by_id(real_validation, real_test) -> dict[str, dict]:
    return {r["question_id"]: r for r in [*real_validation, *real_test]}


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The embedder the project uses by default (OpenVINO on the ONNX export)."""
    return Settings().embedder().load()


@pytest.fixture(scope="session")
def torch_embedder() -> Embedder:
    return Embedder(backend="torch").load()


@dataclass
class Materialized:
    home: Path
    settings: Settings
    instance: dg.DagsterInstance
    result: dg.ExecuteInProcessResult

    def metadata(self, asset: str) -> dict:
        event = self.instance.get_latest_materialization_event(dg.AssetKey(["finmath", asset]))
        assert event is not None and event.asset_materialization is not None
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def materialize(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    instance: dg.DagsterInstance,
    selection: list[str] | None = None,
    **settings_overrides: object,
) -> Materialized:
    """Materialise the graph (or the ``selection`` of asset names) with settings at ``home``."""
    from finmath_assets.definitions import build_definitions

    monkeypatch.setenv("FINMATH_HOME", str(home))
    settings = Settings(home=home, hf_cache_dir=home.parent / "hf-cache", **settings_overrides)
    defs = build_definitions(settings)
    keys = [dg.AssetKey(["finmath", name]) for name in selection] if selection else None
    result = defs.resolve_job_def("finmath_job").execute_in_process(
        instance=instance, asset_selection=keys
    )
    assert result.success
    return Materialized(home=home, settings=settings, instance=instance, result=result)


@pytest.fixture(scope="session")
def materialized_real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Materialized]:
    """The whole graph materialised once on the real 1,200 records (embeds every text)."""
    home = tmp_path_factory.mktemp("real") / "home"
    with pytest.MonkeyPatch.context() as monkeypatch, project_instance() as instance:
        yield materialize(home, monkeypatch, instance)


@pytest.fixture(scope="session")
def refreshed_home(materialized_real: Materialized, tmp_path_factory: pytest.TempPathFactory):
    """A home as `make run` leaves it, twice (``homes.py``); the live tests change it."""
    from finmath_assets_tests.homes import build_refreshed_home

    return build_refreshed_home(
        materialized_real.settings.warehouse_path, tmp_path_factory.mktemp("refresh")
    )


@pytest.fixture
def warm_copy(materialized_real: Materialized, tmp_path: Path) -> Path:
    """A private copy of the real warehouse (embedding cache included) to re-run against."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(materialized_real.settings.warehouse_path, home / "warehouse.duckdb")
    return home


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_registry(materialized: Materialized, root: Path) -> Settings:
    """Settings of a new home under ``root`` whose MLflow store is a copy of ``materialized``'s."""
    home = root / "home"
    home.mkdir()
    shutil.copy(materialized.home / "mlflow.db", home / "mlflow.db")
    return Settings(home=home, hf_cache_dir=root / "hf")


@pytest.fixture
def registry_copy(materialized_real: Materialized, tmp_path: Path) -> Settings:
    """Settings whose MLflow store is a private copy (tests move aliases freely)."""
    return copy_registry(materialized_real, tmp_path)


@pytest.fixture
def trained_copy(materialized_real: Materialized, tmp_path: Path) -> Settings:
    """The session's warehouse and MLflow store (answer model v1) copied to a new home; new
    runs of the copy log their artefacts under it, not under the session's home."""
    settings = copy_registry(materialized_real, tmp_path)
    home, source = settings.home, materialized_real.settings
    assert settings.processed_dir == home / "processed"
    settings.processed_dir.mkdir()
    shutil.copy(source.warehouse_path, settings.warehouse_path)
    shutil.copy(source.processed_dir / "evaluation_report.json", settings.processed_dir)
    with sqlite3.connect(home / "mlflow.db") as conn:
        conn.execute(
            "UPDATE experiments SET artifact_location = ?", ((home / "mlartifacts").as_uri(),)
        )
    return settings


ANSWER_MODEL_KEY = dg.AssetKey(["finmath", "answer_model"])
TRAINING = [ANSWER_MODEL_KEY, dg.AssetKey(["finmath", "cv_predictions"])]


def train_step(
    settings: Settings, instance: dg.DagsterInstance, **config: object
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """One run of the training step (``answer_model`` + ``cv_predictions``, op ``config``
    given); its answer_model metadata, row and cv_predictions."""
    from finmath_assets.definitions import build_definitions

    result = (
        build_definitions(settings)
        .resolve_job_def("finmath_job")
        .execute_in_process(
            instance=instance,
            asset_selection=TRAINING,
            run_config={"ops": {"train_answer_model": {"config": config}}} if config else None,
        )
    )
    assert result.success
    metadata = materialization_metadata(result, ANSWER_MODEL_KEY)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        row = conn.execute("SELECT * FROM finmath.answer_model").fetchdf()
        cv = conn.execute("SELECT * FROM finmath.cv_predictions").fetchdf()
    return metadata, row, cv


@contextlib.contextmanager
def service_process(
    settings: Settings,
    tmp_path: Path,
    extra_env: dict[str, str] | None = None,
    *,
    probe: str = "/ready",
) -> Iterator[str]:
    """``uvicorn serving.app:app`` as its own process (the load test's client then does not
    share the server's GIL), configured through the environment like ``make serve``; its log is
    ``tmp_path/uvicorn.log``. Up once ``probe`` answers 200 (``/health`` for a service that
    waits for its model)."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FINMATH_")},
        "FINMATH_HOME": str(settings.home),
        "FINMATH_MODEL_CACHE_DIR": str(settings.model_cache_dir_value),
        "HF_HUB_OFFLINE": "1",
        **(extra_env or {}),
    }
    with http_process(
        [sys.executable, "-m", "uvicorn", "serving.app:app", "--port", str(port)],
        env=env,
        log_path=tmp_path / "uvicorn.log",
        url=f"http://127.0.0.1:{port}",
        probe=probe,
    ) as url:
        yield url


@contextlib.contextmanager
def http_process(
    command: list[str], *, env: dict[str, str], log_path: Path, url: str, probe: str, cwd=None
) -> Iterator[str]:
    """Start a server process and yield ``url`` once ``probe`` answers 200; on the way out,
    terminate it. If it dies first, the assertion shows the end of its log."""
    log = log_path.open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{command[0]} did not answer {probe} in 120 s"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}{probe}", timeout=2).status_code == 200:
                    break
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(30)
        log.close()


@contextlib.contextmanager
def process_group(
    command: list[str], *, env: dict[str, str], log_path: Path, cwd: Path
) -> Iterator[subprocess.Popen]:
    """``command`` in its own session, output to ``log_path``; on the way out it is terminated
    and its whole group killed (a daemon's code server and run workers go with it)."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=log, start_new_session=True
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(30)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)


def materialization_metadata(
    result: dg.ExecuteInProcessResult, key: dg.AssetKey
) -> dict[str, object]:
    """The metadata values of the run's one materialisation of ``key``."""
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def compose_example_env() -> dict[str, str]:
    """docker/.env.example as a dict: the environment the compose stack documents."""
    lines = (Path(__file__).resolve().parents[1] / "docker" / ".env.example").read_text()
    pairs = (line.split("=", 1) for line in lines.splitlines())
    return {k: v for k, v in (p for p in pairs if len(p) == 2) if not k.startswith("#")}


# `make run`'s first step: the FinanceMath graph through the dagster CLI
MATERIALIZE_ALL = [
    "asset",
    "materialize",
    "--select",
    "key:finmath/*",
    "-m",
    "finmath_assets.definitions",
]


def system_binary(binary: str, package: str) -> str:
    """The path of ``binary`` from Debian's ``package``, which `make system-deps` installs
    (`make test` runs it first); the tests never install anything themselves."""
    found = shutil.which(binary)
    assert found, f"{binary} not found: run `make system-deps` (installs Debian's {package})"
    return found


@pytest.fixture(scope="session")
def promtool() -> str:
    """Debian's prometheus package (promtool and prometheus)."""
    system_binary("prometheus", "prometheus")
    return system_binary("promtool", "prometheus")


class Receiver:
    """A Slack-style webhook: records every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as hook:
        yield hook


def read_alerts(path: Path) -> list[dict]:
    """The alerts the sink wrote to ``path`` (alerts.jsonl), oldest first."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
