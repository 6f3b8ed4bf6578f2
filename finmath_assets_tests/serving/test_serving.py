"""The inference service over real HTTP, on a real MLflow sqlite store and the real MiniLM."""

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pytest
import uvicorn
from mlflow.tracking import MlflowClient

from finmath_assets.core.registry import LoadedModel, load_model
from finmath_assets.settings import Settings
from finmath_assets_tests.conftest import (
    Materialized,
    copy_registry,
    free_port,
    service_process,
)
from serving.app import create_app
from serving.model_state import ModelCompatibilityError, ModelState, check_compatible
from serving.settings import ServingSettings

pytestmark = pytest.mark.slow  # the service under uvicorn on the real registry

MODEL = "finmath-answer-regressor"


class Service:
    def __init__(self, settings: Settings, serving: ServingSettings) -> None:
        self.settings = settings
        self.port = free_port()
        self.app = create_app(settings, serving)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        with contextlib.suppress(SystemExit):  # uvicorn exits when the app's start-up fails
            self.server.run()

    def __enter__(self) -> "Service":
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the service exited during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError("the service did not start in 120 s")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


SERVING = ServingSettings(refresh_seconds=0.3, log_flush_seconds=0.2)


@pytest.fixture
def service(registry_copy: Settings) -> Iterator[Service]:
    """A service of the test's own: the test may move aliases or count its metrics."""
    with Service(registry_copy, SERVING) as svc:
        yield svc


@pytest.fixture(scope="module")
def shared_service(
    materialized_real: Materialized, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """One service for the tests that only read from it or are refused by it (each service
    takes ~2.5 s to load the champion and the embedder)."""
    settings = copy_registry(materialized_real, tmp_path_factory.mktemp("shared-service"))
    with Service(settings, SERVING) as svc:
        yield svc


def _records(materialized: Materialized, split: str, n: int) -> list[dict]:
    with duckdb.connect(str(materialized.settings.warehouse_path), read_only=True) as conn:
        rows = conn.execute(
            "SELECT question_id, question, tables, topic FROM finmath.validated_records "
            "WHERE split = ? ORDER BY question_id LIMIT ?",
            [split, n],
        ).fetchall()
    return [
        {"question_id": r[0], "question": r[1], "tables": list(r[2]), "topic": r[3]} for r in rows
    ]


def _body(record: dict) -> dict:
    return {k: record[k] for k in ("question", "tables", "topic")}


def test_prediction_equals_the_training_side_prediction(
    service: Service, materialized_real: Materialized
) -> None:
    champion = load_model(MODEL, tracking_uri=materialized_real.settings.mlflow_tracking_uri_value)
    with duckdb.connect(str(materialized_real.settings.warehouse_path), read_only=True) as conn:
        features = conn.execute("SELECT * FROM finmath.features").fetchdf().set_index("question_id")
    records = _records(materialized_real, "validation", 5) + _records(materialized_real, "test", 5)
    with httpx.Client(base_url=service.url, timeout=60) as client:
        for record in records:
            response = client.post("/predict", json=_body(record))
            assert response.status_code == 200, response.text
            body = response.json()
            expected = champion.predict(features.loc[[record["question_id"]]])[0]
            assert body["prediction"] == pytest.approx(expected, rel=1e-6, abs=1e-9)
            assert (body["model_name"], body["model_version"]) == (MODEL, "1")
            assert len(body["request_id"]) == 32
        batch = client.post("/predict/batch", json={"items": [_body(r) for r in records]})
        assert batch.status_code == 200
        singles = [client.post("/predict", json=_body(r)).json()["prediction"] for r in records]
        np.testing.assert_allclose(batch.json()["predictions"], singles, rtol=1e-6)
    # the service embedded exactly as the question_embeddings asset did (same backend, same id,
    # the same vectors bit for bit): the sequential calls ran alone, the batch's items on both
    # workers at once, so both of the encoder's runners are compared with the warehouse
    with duckdb.connect(str(materialized_real.settings.warehouse_path), read_only=True) as conn:
        stored = dict(
            conn.execute(
                "SELECT question_id, embedding FROM finmath.question_embeddings"
            ).fetchall()
        )
        model_ids = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT model_id FROM finmath.question_embeddings"
            ).fetchall()
        }
    assert model_ids == {champion.embedding_model_id} and "+openvino" in champion.embedding_model_id
    # the log holds the sequential /predict calls, the batch's items, the singles again, in order
    logged = _inference_log(service.settings, at_least=3 * len(records))[: 3 * len(records)]
    for record, row in zip(records * 3, logged, strict=True):
        assert row["features"]["question_chars"] == len(record["question"])
        served = [v for k, v in row["features"].items() if k.startswith("emb_")]
        np.testing.assert_array_equal(np.float32(served), np.float32(stored[record["question_id"]]))


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"topic": "Astrology"}, 422, "topic"),
        ({"question": ""}, 422, "question"),
        ({"question": "x" * 4001}, 422, "question"),
        ({"tables": ["| a |"] * 9}, 422, "tables"),
        ({"tables": ["x" * 20001]}, 422, "tables"),
        ({"tables": "not a list"}, 422, "tables"),
        ({"surprise": 1}, 422, "surprise"),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_field(
    shared_service: Service, change, status, field
) -> None:
    body = {"question": "What is the NPV?", "tables": [], "topic": "Accounting", **change}
    response = httpx.post(f"{shared_service.url}/predict", json=body, timeout=30)
    assert response.status_code == status
    assert field in json.dumps(response.json()["detail"])


def test_oversized_and_malformed_bodies(shared_service: Service) -> None:
    big = {"question": "q", "tables": [], "topic": "Accounting", "pad": "x" * 1_100_000}
    response = httpx.post(f"{shared_service.url}/predict", json=big, timeout=30)
    assert response.status_code == 413 and "FINMATH_SERVING_MAX_BODY_BYTES" in response.text
    response = httpx.post(
        f"{shared_service.url}/predict",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    too_many = {"items": [{"question": "q", "tables": [], "topic": "Accounting"}] * 65}
    response = httpx.post(f"{shared_service.url}/predict/batch", json=too_many, timeout=30)
    assert response.status_code == 422 and "items" in response.text


# every limit of ServingSettings set below what the bodies of LIMITED use
SMALL_LIMITS = ServingSettings(
    max_question_chars=20,
    max_tables=1,
    max_table_chars=10,
    max_batch_items=2,
    forecast_max_tickers=1,
    forecast_max_horizon=3,
)
QUESTION = "What is 5% of $1,000 over 3 years?"  # 34 characters
# route -> (a body within the default limits, the loc of each field over SMALL_LIMITS)
LIMITED = {
    "/predict": (
        {"question": QUESTION, "tables": ["| a | b |", "| 1 | 2 |"], "topic": "Accounting"},
        [["body", "question"], ["body", "tables"]],
    ),
    "/predict/batch": (
        {"items": [{"question": "q", "topic": "Accounting"}] * 3},
        [["body", "items"]],
    ),
    "/ask": (
        {"question": QUESTION, "tables": ["| a long table |"]},
        [["body", "question"], ["body", "tables", 0]],
    ),
    "/forecast": (
        {"tickers": ["AAPL", "IBM"], "horizon": 5},
        [["body", "tickers"], ["body", "horizon"]],
    ),
}


def test_request_limits_are_those_given_to_create_app(
    service: Service, registry_copy: Settings
) -> None:
    """``create_app(serving=ServingSettings(...))`` validates and documents its own limits: a
    body that the default app accepts is a 422 naming each field over the small limits."""
    with httpx.Client(base_url=service.url, timeout=30) as http:
        for route, (body, _) in LIMITED.items():
            # 200, or the route's documented refusal of a valid body (no forecaster, no LLM)
            assert http.post(route, json=body).status_code in (200, 404, 503), route
    with (
        Service(registry_copy, SMALL_LIMITS) as small,
        httpx.Client(base_url=small.url, timeout=30) as http,
    ):
        for route, (body, locs) in LIMITED.items():
            response = http.post(route, json=body)
            assert response.status_code == 422, (route, response.text)
            detail = response.json()["detail"]
            assert [d["loc"] for d in detail] == locs, (route, detail)
        question = http.post("/predict", json={**LIMITED["/predict"][0], "tables": []})
        assert question.json()["detail"] == [
            {
                "type": "string_too_long",
                "loc": ["body", "question"],
                "msg": "String should have at most 20 characters",
                "input": QUESTION,
                "ctx": {"max_length": 20},
            }
        ]
        short = {"question": "What is 5% of $100?", "tables": ["| 5 |"], "topic": "Accounting"}
        assert http.post("/predict", json=short).status_code == 200
        schemas = http.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["PredictRequest"]["properties"]["question"]["maxLength"] == 20
    assert schemas["PredictRequest"]["properties"]["tables"]["items"]["maxLength"] == 10
    assert schemas["BatchRequest"]["properties"]["items"]["maxItems"] == 2
    assert schemas["AskRequest"]["properties"]["tables"]["maxItems"] == 1
    assert schemas["ForecastRequest"]["properties"]["tickers"]["maxItems"] == 1
    assert schemas["ForecastRequest"]["properties"]["horizon"]["maximum"] == 3


def test_health_ready_model_and_openapi(shared_service: Service) -> None:
    with httpx.Client(base_url=shared_service.url, timeout=30) as client:
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready").json()
        assert (
            ready["ready"] and ready["model_version"] == "1" and ready["last_reload_error"] is None
        )
        model = client.get("/model").json()
        assert (model["name"], model["version"], model["alias"]) == (MODEL, "1", "champion")
        assert model["cv_metrics"]["cv_signed_log_mae"] > 0 and model["trained_at"]
        openapi = client.get("/openapi.json").json()
        schema = openapi["components"]["schemas"]["PredictRequest"]
        assert schema["properties"]["topic"]["enum"][0] == "Accounting"
        assert schema["examples"][0]["topic"] == "Accounting"


def _inference_log(settings: Settings, at_least: int) -> list[dict]:
    """The inference log's rows, once it holds ``at_least`` of them (it flushes every 0.2 s)."""
    deadline = time.monotonic() + 10
    rows: list[dict] = []
    while time.monotonic() < deadline and len(rows) < at_least:
        time.sleep(0.2)
        rows = [
            json.loads(line)
            for path in (settings.home / "inference_log").glob("predictions-*.jsonl")
            for line in path.read_text().splitlines()
        ]
    assert len(rows) >= at_least
    return rows


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") or line.startswith(f"{name} "):
            head, value = line.rsplit(" ", 1)
            got = head[len(name) :].strip("{}")
            if ",".join(sorted(got.split(","))) == wanted or (not labels and not got):
                return float(value)
    return 0.0


def test_metrics_rise_and_inference_log_receives_rows(
    service: Service, registry_copy: Settings
) -> None:
    body = {"question": "What is 5% of $1,000?", "tables": [], "topic": "Accounting"}
    with httpx.Client(base_url=service.url, timeout=30) as client:
        before = client.get("/metrics").text
        for _ in range(3):
            assert client.post("/predict", json=body).status_code == 200
        assert client.post("/predict", json={**body, "topic": "x"}).status_code == 422
        after = client.get("/metrics").text
    ok = _metric(after, "finmath_http_requests_total", route="/predict", status="200")
    assert ok - _metric(before, "finmath_http_requests_total", route="/predict", status="200") == 3
    assert _metric(after, "finmath_http_requests_total", route="/predict", status="422") >= 1
    assert _metric(after, "finmath_prediction_value_count") >= 3
    assert _metric(after, "finmath_inference_batch_size_count") >= 3
    assert _metric(after, "finmath_model_ready") == 1
    # the pipeline's latest drift share, published from the file drift_report writes
    assert _metric(after, "finmath_drift_share") == -1  # no drift report yet
    registry_copy.drift_summary_path.parent.mkdir(parents=True, exist_ok=True)
    registry_copy.drift_summary_path.write_text(
        json.dumps({"drift_share": 0.0625, "embedding_drift_share": 0.05})
    )
    published = httpx.get(f"{service.url}/metrics", timeout=30).text
    assert _metric(published, "finmath_drift_share") == 0.0625
    assert _metric(published, "finmath_embedding_drift_share") == 0.05
    assert 'finmath_model_info{alias="champion"' in after
    rows = _inference_log(registry_copy, at_least=3)
    assert {"timestamp", "request_id", "model_version", "prediction", "features"} <= set(rows[0])
    assert rows[0]["features"]["n_percent_numbers"] == 1.0


def test_hot_reload_and_broken_version(service: Service, registry_copy: Settings) -> None:
    uri = registry_copy.mlflow_tracking_uri_value
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    errors: list[str] = []
    stop = threading.Event()
    body = {"question": "What is the bond's duration?", "tables": [], "topic": "Risk Management"}

    def hammer() -> None:
        with httpx.Client(base_url=service.url, timeout=60) as http:
            for _ in range(400):  # bounded
                if stop.is_set():
                    return
                response = http.post("/predict", json=body)
                if response.status_code != 200:
                    errors.append(response.text)

    loop = threading.Thread(target=hammer)
    loop.start()
    new = client.create_model_version(MODEL, champion.source, run_id=champion.run_id)
    client.set_registered_model_alias(MODEL, "champion", str(new.version))
    deadline = time.monotonic() + 20
    while httpx.get(f"{service.url}/model").json()["version"] != str(new.version):
        assert time.monotonic() < deadline, "the new champion was not picked up"
        time.sleep(0.1)
    # a broken version: the old model keeps serving, /ready and the metric say so
    broken = client.create_model_version(
        MODEL, str(registry_copy.home / "no-such-model"), run_id=champion.run_id
    )
    client.set_registered_model_alias(MODEL, "champion", str(broken.version))
    deadline = time.monotonic() + 20
    while httpx.get(f"{service.url}/ready").json()["last_reload_error"] is None:
        assert time.monotonic() < deadline, "the failed reload was not reported"
        time.sleep(0.1)
    stop.set()
    loop.join()
    ready = httpx.get(f"{service.url}/ready").json()
    assert ready["ready"] and ready["model_version"] == str(new.version)
    assert ready["reloads"] == 1 and ready["reload_failures"] >= 1
    metrics = httpx.get(f"{service.url}/metrics").text
    assert _metric(metrics, "finmath_model_reload_failures_total") >= 1
    assert _metric(metrics, "finmath_model_reloads_total") == 1
    assert errors == []


def test_bounded_load_gives_no_errors(
    registry_copy: Settings, materialized_real: Materialized, tmp_path: Path
) -> None:
    bodies = [_body(r) for r in _records(materialized_real, "test", 1000)]
    total, concurrency = 800, 16
    statuses: list[int] = []

    async def load(url: str) -> None:
        requests = iter(range(total))  # bounded: 800 requests shared by 16 workers

        async def worker(http: httpx.AsyncClient) -> None:
            for i in requests:
                statuses.append((await http.post("/predict", json=bodies[i % 1000])).status_code)

        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
            await asyncio.gather(*(worker(http) for _ in range(concurrency)))

    with service_process(registry_copy, tmp_path) as url:
        asyncio.run(load(url))
        metrics = httpx.get(f"{url}/metrics").text
    assert len(statuses) == total and set(statuses) == {200}
    assert _metric(metrics, "finmath_http_requests_total", route="/predict", status="200") == total
    assert _metric(metrics, "finmath_inference_batch_size_sum") > _metric(
        metrics, "finmath_inference_batch_size_count"
    )  # concurrent requests were grouped


def test_service_on_another_embedding_backend_refuses_the_champion(
    registry_copy: Settings, torch_embedder
) -> None:
    uri = registry_copy.mlflow_tracking_uri_value
    state = ModelState(lambda: load_model(MODEL, tracking_uri=uri), None, torch_embedder)
    with pytest.raises(ModelCompatibilityError, match="FINMATH_EMBEDDING_BACKEND"):
        state.load_initial()
    assert state.current is None


def test_service_refuses_a_model_it_would_feed_wrong_features(embedder) -> None:
    good = LoadedModel(
        model=None,
        name=MODEL,
        version="9",
        alias="champion",
        run_id="r",
        feature_columns=["question_chars", "emb_000"],
        embedding_model_id=embedder.model_id,
    )
    check_compatible(good, embedder)
    with pytest.raises(ModelCompatibilityError, match="does not produce"):
        check_compatible(
            LoadedModel(**{**good.__dict__, "feature_columns": ["question_chars", "emb_999"]}),
            embedder,
        )
    with pytest.raises(ModelCompatibilityError, match="trained on embeddings of 'other-model'"):
        check_compatible(
            LoadedModel(**{**good.__dict__, "embedding_model_id": "other-model"}), embedder
        )


def test_service_without_a_champion_does_not_start(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "empty", hf_cache_dir=tmp_path / "hf")
    (tmp_path / "empty").mkdir()
    svc = Service(settings, ServingSettings())
    with pytest.raises(RuntimeError, match="exited during start-up"):
        svc.__enter__()


def test_service_told_to_wait_starts_without_a_champion_and_serves_once_it_appears(
    registry_copy: Settings,
) -> None:
    uri = registry_copy.mlflow_tracking_uri_value
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    client.delete_registered_model_alias(MODEL, "champion")  # as before the first training run
    body = {"question": "What is the bond's duration?", "tables": [], "topic": "Risk Management"}
    serving = ServingSettings(wait_for_model=True, refresh_seconds=0.3)
    with Service(registry_copy, serving) as svc, httpx.Client(base_url=svc.url, timeout=60) as http:
        assert http.get("/health").status_code == 200
        ready = http.get("/ready")
        assert ready.status_code == 503 and "champion" in ready.json()["last_reload_error"]
        for path, payload in (("/predict", body), ("/predict/batch", {"items": [body]})):
            refused = http.post(path, json=payload)
            assert refused.status_code == 503
            assert f"waiting for {MODEL}@champion" in refused.json()["detail"]
        client.set_registered_model_alias(MODEL, "champion", str(champion.version))
        deadline = time.monotonic() + 20
        while http.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, "the champion was not picked up"
            time.sleep(0.1)
        answered = http.post("/predict", json=body)
        assert answered.status_code == 200 and answered.json()["model_version"] == str(
            champion.version
        )
