"""Malformed bodies over real HTTP (``uvicorn serving.app:app`` as its own process, on a copy of
the real MLflow store): each POST route answers a 4xx whose JSON names the problem, never a 5xx,
and the service stays ready (issue 14)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from finmath_assets.settings import Settings
from finmath_assets_tests.conftest import Materialized, service_process

pytestmark = pytest.mark.slow  # the service under uvicorn

X = "__X__"  # where a case puts its bad literal
ROUTES = {  # a valid body with X in one field, and that field's loc
    "/predict": (
        {"question": X, "tables": [], "topic": "Accounting"},
        ["body", "question"],
    ),
    "/predict/batch": (
        {"items": [{"question": X, "tables": [], "topic": "Accounting"}]},
        ["body", "items", 0, "question"],
    ),
    "/ask": ({"question": X, "tables": []}, ["body", "question"]),
    "/forecast": ({"tickers": [X], "horizon": 3}, ["body", "tickers", 0]),
}
JSON = {"content-type": "application/json"}
DEEP = 100_000


def _with(route: str, literal: bytes) -> bytes:
    """The route's body with ``literal`` (raw JSON text) in place of X."""
    return json.dumps(ROUTES[route][0]).encode().replace(f'"{X}"'.encode(), literal)


# case -> (body maker, headers, status, words the detail must hold, names the field's loc)
CASES = {
    "nan": (lambda r: _with(r, b"NaN"), JSON, 422, ["NaN", "json_invalid"], True),
    "infinity": (lambda r: _with(r, b"Infinity"), JSON, 422, ["Infinity"], True),
    "minus_infinity": (lambda r: _with(r, b"-Infinity"), JSON, 422, ["-Infinity"], True),
    "overflowing_number": (lambda r: _with(r, b"1e400"), JSON, 422, ["1e400", "double"], True),
    "lone_surrogate": (
        lambda r: _with(r, b'"AB\\ud800"'),
        JSON,
        422,
        ["surrogate", "string_unicode"],
        True,
    ),
    "deeply_nested": (
        lambda r: b"[" * DEEP + b"]" * DEEP,
        JSON,
        422,
        ["nested too deeply"],
        False,
    ),
    "invalid_utf8": (lambda r: _with(r, b'"\xff\xfe\xed\xa0\x80"'), JSON, 422, ["UTF-8"], False),
    "wrong_content_type": (
        lambda r: _with(r, b'"AAPL"'),
        {"content-type": "text/plain"},
        415,
        ["Content-Type", "application/json", "text/plain"],
        False,
    ),
    "no_content_type": (lambda r: _with(r, b'"AAPL"'), {}, 415, ["Content-Type"], False),
    "empty_body": (lambda r: b"", JSON, 422, ["body is required"], False),
    "array_not_object": (
        lambda r: b"[" + _with(r, b'"AAPL"') + b"]",
        JSON,
        422,
        ["valid dictionary"],
        False,
    ),
    "truncated_json": (lambda r: _with(r, b'"AAPL"')[:-3], JSON, 422, ["invalid JSON"], False),
    "huge_integer": (lambda r: _with(r, b"9" * 5000), JSON, 422, ["4300 digits"], False),
}


@pytest.fixture(scope="module")
def service(materialized_real: Materialized, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The service on a copy of the real store: a champion answer model, no forecaster, no LLM."""
    home = tmp_path_factory.mktemp("malformed") / "home"
    home.mkdir()
    shutil.copy(materialized_real.home / "mlflow.db", home / "mlflow.db")
    settings = Settings(home=home, hf_cache_dir=home.parent / "hf")
    logs = tmp_path_factory.mktemp("malformed-service")
    with service_process(settings, logs) as url:
        yield url, logs / "uvicorn.log"


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("route", list(ROUTES))
def test_malformed_body_gets_a_4xx_naming_the_problem(service, route: str, case: str) -> None:
    url, _ = service
    make, headers, status, words, names_field = CASES[case]
    response = httpx.post(f"{url}{route}", content=make(route), headers=headers, timeout=30)
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    for word in words:
        assert word in json.dumps(detail, ensure_ascii=False), detail
    if isinstance(detail, list):  # the validation shape: type, loc, msg
        assert {"type", "loc", "msg"} <= set(detail[0]) and detail[0]["loc"][0] == "body"
    if names_field:
        assert detail[0]["loc"] == ROUTES[route][1]


@pytest.mark.parametrize("route", list(ROUTES))
def test_oversized_chunked_body_gets_413(service, route: str) -> None:
    """No Content-Length to check up front: the limit holds while the body streams in."""
    url, _ = service

    def chunks() -> Iterator[bytes]:
        yield b'{"question": "'
        for _ in range(1100):
            yield b"x" * 1000

    response = httpx.post(f"{url}{route}", content=chunks(), headers=JSON, timeout=30)
    assert response.status_code == 413
    assert "FINMATH_SERVING_MAX_BODY_BYTES" in response.json()["detail"]


def test_the_service_stays_ready_and_never_answered_5xx(service) -> None:
    url, log_path = service
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/ready").status_code == 200
        body = {"question": "What is 5% of $1,000?", "tables": [], "topic": "Accounting"}
        assert client.post("/predict", json=body).status_code == 200
    log = Path(log_path).read_text()
    assert '" 500' not in log and "Traceback" not in log, log[-3000:]
