"""The production profile on a real PostgreSQL (Debian's server, a throwaway cluster on
127.0.0.1): the whole asset graph materialises through the `dagster` CLI with the repository's
docker/dagster/dagster.yaml (run, event and schedule storage on Postgres), MLflow runs as a
tracking server whose backend store is that Postgres, the model registers there, and the
inference service loads the champion from the server's HTTP URI and answers."""

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import httpx
import pytest
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage
from mlflow.tracking import MlflowClient

from finmath_assets.definitions import build_definitions
from finmath_assets.settings import Settings
from finmath_assets_tests.conftest import (
    MATERIALIZE_ALL,
    Materialized,
    compose_example_env,
    free_port,
    http_process,
    service_process,
)
from finmath_assets_tests.postgres import Postgres, throwaway_postgres

pytestmark = pytest.mark.slow  # PostgreSQL, an MLflow server and the service as processes

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODEL = "finmath-answer-regressor"


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with throwaway_postgres() as server:
        # what docker/postgres/10-create-mlflow-db.sql and POSTGRES_DB do in the compose stack
        server.create_database("dagster")
        server.create_database("mlflow")
        yield server


@contextlib.contextmanager
def mlflow_server(postgres: Postgres, tmp_path: Path) -> Iterator[str]:
    """`mlflow server` as the mlflow image runs it: Postgres backend, proxied artefacts."""
    port = free_port()
    # the compose stack's allowed Host headers (MLflow 3 refuses unknown ones), plus this
    # test's own port (the stack publishes 5000)
    allowed = compose_example_env()["MLFLOW_SERVER_ALLOWED_HOSTS"] + f",127.0.0.1:{port}"
    with http_process(
        [
            str(BIN / "mlflow"),
            "server",
            "--host=127.0.0.1",
            f"--port={port}",
            "--workers=1",
            f"--backend-store-uri={postgres.url('mlflow')}",
            f"--artifacts-destination={tmp_path / 'server-artifacts'}",
        ],
        env={**os.environ, "MLFLOW_SERVER_ALLOWED_HOSTS": allowed},
        log_path=tmp_path / "mlflow-server.log",
        url=f"http://127.0.0.1:{port}",
        probe="/health",
        cwd=tmp_path,
    ) as url:
        yield url


def _dagster_env(postgres: Postgres, dagster_home: Path) -> dict[str, str]:
    return {
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_PG_HOST": postgres.host,
        "DAGSTER_PG_PORT": str(postgres.port),
        "DAGSTER_PG_USER": postgres.user,
        "DAGSTER_PG_PASSWORD": postgres.password,
        "DAGSTER_PG_DB": "dagster",
        "DAGSTER_COMPUTE_LOG_DIR": str(dagster_home / "logs"),
    }


def test_whole_graph_on_postgres_and_an_mlflow_server_then_the_service_serves_it(
    postgres: Postgres,
    materialized_real: Materialized,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a fresh FINMATH_HOME with the embedding cache warm (the warehouse file only): the run
    # recomputes every asset but skips re-embedding 1,200 texts
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(materialized_real.settings.warehouse_path, home / "warehouse.duckdb")
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(ROOT / "docker" / "dagster" / "dagster.yaml", dagster_home / "dagster.yaml")
    dagster_env = _dagster_env(postgres, dagster_home)

    with mlflow_server(postgres, tmp_path) as tracking_uri:
        finmath_env = {
            "FINMATH_HOME": str(home),
            "FINMATH_HF_CACHE_DIR": str(tmp_path / "hf"),
            "FINMATH_MLFLOW_TRACKING_URI": tracking_uri,
        }
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("FINMATH_", "DAGSTER_"))},
            "FINMATH_MODEL_CACHE_DIR": str(materialized_real.settings.model_cache_dir_value),
            "HF_HUB_OFFLINE": "1",
            **dagster_env,
            **finmath_env,
        }
        # the production command of docs/deployment.md: the CLI, the repository's instance config
        run = subprocess.run(
            [str(BIN / "dagster"), *MATERIALIZE_ALL],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert run.returncode == 0, run.stderr[-5000:]
        assert "1200 texts cached, 0 to embed" in run.stderr

        # Dagster's storage is the Postgres database: one successful run, every asset there
        for key, value in dagster_env.items():
            monkeypatch.setenv(key, value)
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
            (record,) = instance.get_run_records()
            assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
            settings = Settings(home=home, mlflow_tracking_uri=tracking_uri)
            graph = build_definitions(settings).resolve_asset_graph()
            missing = [
                key.to_user_string()
                for key in graph.get_all_asset_keys()
                if key.path[0] == "finmath"
                and instance.get_latest_materialization_event(key) is None
            ]
            assert missing == []
        with postgres.connect("dagster") as connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM runs")
            assert cursor.fetchone()[0] == 1
        # nothing went to the local defaults
        assert not (home / "mlflow.db").exists() and not (home / "mlartifacts").exists()

        # containers reach the server as mlflow:5000; an unknown Host is refused
        search = f"{tracking_uri}/api/2.0/mlflow/experiments/search?max_results=1"
        assert httpx.get(search, headers={"Host": "mlflow:5000"}).status_code == 200
        assert httpx.get(search, headers={"Host": "evil.example:5000"}).status_code == 403

        # the model registered on the server, its artefacts stored by the server
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        champion = client.get_model_version_by_alias(MODEL, "champion")
        artifact_uri = client.get_run(champion.run_id).info.artifact_uri
        assert artifact_uri.startswith("mlflow-artifacts:/"), artifact_uri
        assert any((tmp_path / "server-artifacts").rglob("MLmodel"))
        with postgres.connect("mlflow") as connection, connection.cursor() as cursor:
            cursor.execute("SELECT name FROM registered_models")
            assert cursor.fetchall() == [(MODEL,)]

        # the service follows the champion through the server's HTTP URI
        with service_process(settings, tmp_path, extra_env=finmath_env) as url:
            model = httpx.get(f"{url}/model", timeout=10).json()
            assert model["version"] == str(champion.version)
            body = {
                "question": "A bond pays a 5% annual coupon and has 3 years to maturity. "
                "If the yield is 4%, what is its price per 100 of face value?",
                "tables": [],
                "topic": "Quantitative Analysis & Valuation",
            }
            answer = httpx.post(f"{url}/predict", json=body, timeout=60)
            assert answer.status_code == 200, answer.text
            assert answer.json()["model_version"] == str(champion.version)
