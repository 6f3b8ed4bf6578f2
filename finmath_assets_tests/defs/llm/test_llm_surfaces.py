"""The LLM surfaces against a scripted OpenAI-compatible stub (the client wiring; scoring and
sandbox are real): llm_qa_eval scores what the stub answered exactly as the paper would, keeps
the raw outputs and logs to MLflow; without an endpoint it fails with the setting to set;
`POST /ask` over real HTTP runs the model's program in the sandbox, reports failures in its
status, counts them in Prometheus, and answers 503 without an endpoint, showing the most similar
solved example labelled as not an answer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import httpx
import pytest

from finmath_assets.core.llm.functions import LIBRARY
from finmath_assets.settings import Settings
from finmath_assets_tests.conftest import Materialized, service_process
from finmath_assets_tests.llm_stub import LLMStub, Reply

pytestmark = pytest.mark.slow  # materialises assets and starts the service

VALIDATION = json.loads(
    (
        Path(__file__).resolve().parents[3] / "finmath_assets/data/financemath/validation.json"
    ).read_text(encoding="utf-8")
)
BY_QUESTION = {record["question"]: record for record in VALIDATION}


def _question_of(body: dict[str, Any]) -> dict:
    """The validation record whose question is in the request's last user message."""
    last_user = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    return next(r for q, r in BY_QUESTION.items() if q in last_user)


def _gold_for_even_ids(body: dict[str, Any]) -> Reply:
    """validation-0, -2, ...: the gold program (correct); odd ids: a wrong constant."""
    record = _question_of(body)
    index = int(record["question_id"].rsplit("-", 1)[1])
    if index % 2 == 0:
        return Reply(content=f"```python\n{record['python_solution']}\n```")
    return Reply(content="```python\ndef solution():\n    return -123456.0\n```")


def test_llm_qa_eval_scores_the_stub_like_the_paper(
    warm_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finmath_assets.definitions import build_definitions

    monkeypatch.setenv("FINMATH_HOME", str(warm_copy))
    # self-consistency with repair: a greedy program, then samples until two agree (at once)
    with LLMStub(replies=[_gold_for_even_ids] * 8) as stub, dg.instance_for_test() as instance:
        settings = Settings(
            home=warm_copy,
            llm_base_url=stub.base_url,
            llm_model="stub-model",
            llm_few_shot=2,
            llm_samples=5,
            llm_repair=True,
            llm_functions=2,
        )
        result = (
            build_definitions(settings)
            .resolve_job_def("llm_eval_job")
            .execute_in_process(
                instance=instance,
                run_config={"ops": {"llm__llm_qa_eval": {"config": {"limit": 4}}}},
            )
        )
        assert result.success
        requests = stub.chat_requests
    assert len(requests) == 8
    assert [r.body["temperature"] for r in requests] == [0, 0.6] * 4
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        rows = conn.execute(
            "SELECT question_id, correct, executed, retrieved_ids, raw_output, samples, "
            "split_half, attempts, functions FROM llm.llm_qa_eval ORDER BY question_id"
        ).fetchall()
    assert [(r[0], r[1], r[2], r[5], r[6]) for r in rows] == [
        ("validation-0", True, True, 2, "tune"),
        ("validation-1", False, True, 2, "tune"),
        ("validation-2", True, True, 2, "tune"),
        ("validation-3", False, True, 2, "tune"),
    ]
    attempts = json.loads(rows[0][7])  # every attempt kept and scored on its own
    assert [(a["sample"], a["temperature"], a["correct"]) for a in attempts] == [
        (0, 0.0, True),
        (1, 0.6, True),
    ]
    assert attempts[1]["raw_output"].startswith("```python")
    library = {f.name for f in LIBRARY}
    for question_id, _, _, retrieved, raw, _, _, _, functions in rows:
        ids = json.loads(retrieved)
        assert len(ids) == 2 and question_id not in ids  # never retrieves itself
        assert raw.startswith("```python")  # the raw output is kept as the model wrote it
        assert len(json.loads(functions)) <= 2 and set(json.loads(functions)) <= library
    (materialization,) = [
        e.event_specific_data.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["llm", "llm_qa_eval"])
    ]
    assert materialization.metadata["accuracy"].value == 50.0
    assert materialization.metadata["execution_rate"].value == 100.0
    assert "Llama-3.1-8B-Instruct 21.0" in materialization.metadata["by_topic"].value
    ablation = materialization.metadata["ablation"].value
    assert "| greedy + functions ≤2 | tune | 4 | 50.0 | 100.0 |" in ablation
    assert "| vote ≤5 (stop at 2) + repair + functions ≤2 | tune | 4 | 50.0 | 100.0 |" in ablation

    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri_value)
    runs = mlflow.search_runs(
        experiment_names=[settings.mlflow_experiment],
        filter_string="tags.`dagster.asset` = 'llm/llm_qa_eval'",
        output_format="list",
    )
    assert len(runs) == 1 and runs[0].data.metrics["pot_accuracy"] == 50.0
    assert runs[0].data.params["prompt"] == "improved"
    assert runs[0].data.params["samples"] == "5" and runs[0].data.params["repair"] == "True"
    assert runs[0].data.params["functions"] == "2"


def test_llm_qa_eval_without_an_endpoint_fails_naming_the_setting(
    warm_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finmath_assets.definitions import build_definitions

    monkeypatch.setenv("FINMATH_HOME", str(warm_copy))
    with dg.instance_for_test() as instance:
        result = (
            build_definitions(Settings(home=warm_copy))
            .resolve_job_def("llm_eval_job")
            .execute_in_process(instance=instance, raise_on_error=False)
        )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "FINMATH_LLM_BASE_URL" in failure.step_failure_data.error.message


@pytest.fixture
def ask_settings(registry_copy: Settings, materialized_real: Materialized) -> Settings:
    """A service home: the registry copy plus the exported solved-example bank."""
    bank = materialized_real.settings.processed_dir / "solved_examples.parquet"
    target = registry_copy.processed_dir / "solved_examples.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(bank, target)
    return registry_copy


def test_ask_runs_the_models_program_and_reports_failures(
    ask_settings: Settings, tmp_path: Path
) -> None:
    record = VALIDATION[5]
    replies = [
        Reply(content=f"```python\n{record['python_solution']}\n```"),
        Reply(content="I cannot write code today."),
        Reply(content="```python\ndef solution():\n    while True:\n        pass\n```"),
        Reply(
            content="```python\ndef solution():\n    return calc_bond_price(100, 0.08, 0.06, 10)```"
        ),
    ]
    with LLMStub(replies=replies) as stub:
        env = {
            "FINMATH_LLM_BASE_URL": stub.base_url,
            "FINMATH_LLM_MODEL": "stub-model",
            "FINMATH_LLM_FUNCTIONS": "2",
            # otherwise the defaults: one greedy program, no repair (each reply is an answer)
        }
        with service_process(ask_settings, tmp_path, extra_env=env) as url:
            body = {"question": record["question"], "tables": record["tables"]}
            ok = httpx.post(f"{url}/ask", json=body, timeout=60).json()
            assert ok["status"] == "ok" and ok["answer"] == pytest.approx(
                record["ground_truth"], rel=2e-3
            )
            assert ok["program"].lstrip().startswith("def solution")
            assert [r["question_id"] for r in ok["retrieved"]] and ok["model"] == "stub-model"
            assert ok["isolation"] and ok["llm_seconds"] is not None
            assert [c["sample"] for c in ok["candidates"]] == [0] and ok["chosen"] == 0
            assert ok["vote"]["voters"] == 1 and ok["candidates"][0]["temperature"] == 0
            garbage = httpx.post(f"{url}/ask", json=body, timeout=60).json()
            assert garbage["status"] == "no_program" and garbage["answer"] is None
            assert garbage["raw_output"].endswith("I cannot write code today.")  # prefill + reply
            looping = httpx.post(f"{url}/ask", json=body, timeout=60).json()
            # stopped by the CPU-seconds limit (an error) or, failing that, the wall clock
            assert looping["status"] in ("error", "timeout") and looping["answer"] is None
            # a library function the prompt offered runs in front of the program that calls it
            bond = (
                "What is the price of a bond with a face value of 100, an 8% annual coupon and "
                "ten years to maturity when its yield to maturity is 6%?"
            )
            priced = httpx.post(f"{url}/ask", json={"question": bond}, timeout=60).json()
            assert priced["status"] == "ok" and priced["answer"] == pytest.approx(114.7202)
            assert priced["functions"][0]["name"] == "calc_bond_price"
            bad = httpx.post(f"{url}/ask", json={"question": ""}, timeout=10)
            assert bad.status_code == 422
            metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'finmath_llm_asks_total{outcome="ok"} 2.0' in metrics
    for outcome in ("no_program", looping["status"]):
        assert f'finmath_llm_asks_total{{outcome="{outcome}"}} 1.0' in metrics
    assert 'finmath_sandbox_runs_total{status="ok"} 2.0' in metrics
    # the unparseable program never reached the sandbox
    assert f'finmath_sandbox_runs_total{{status="{looping["status"]}"}} 1.0' in metrics
    # the improved prompt carried the retrieved solved examples and the prefill
    first = stub.chat_requests[0].body["messages"]
    assert first[-1]["role"] == "assistant" and "def solution():" in first[-1]["content"]
    assert sum(m["role"] == "assistant" for m in first) == 1 + 1  # the default: one example
    assert "def calc_bond_price(" in stub.chat_requests[3].body["messages"][-2]["content"]


def test_ask_shows_every_candidate_the_repair_and_the_vote(
    ask_settings: Settings, tmp_path: Path
) -> None:
    """Self-consistency with repair: the greedy program fails and is repaired (to a wrong
    number), then two sampled programs agree on the gold answer and outvote it; sampling stops
    there."""
    record = VALIDATION[5]
    gold = Reply(content=f"```python\n{record['python_solution']}\n```")
    replies = [
        Reply(content="```python\ndef solution():\n    return rate / 0\n```"),
        Reply(content="```python\ndef solution():\n    return -1.0\n```"),
        gold,
        gold,
    ]
    with LLMStub(replies=replies) as stub:
        env = {
            "FINMATH_LLM_BASE_URL": stub.base_url,
            "FINMATH_LLM_MODEL": "stub-model",
            "FINMATH_LLM_SAMPLES": "5",
            "FINMATH_LLM_REPAIR": "true",
        }
        with service_process(ask_settings, tmp_path, extra_env=env) as url:
            body = {"question": record["question"], "tables": record["tables"]}
            reply = httpx.post(f"{url}/ask", json=body, timeout=60).json()
            metrics = httpx.get(f"{url}/metrics", timeout=10).text
        requests = stub.chat_requests
    assert reply["status"] == "ok"
    assert reply["answer"] == pytest.approx(record["ground_truth"], rel=2e-3)
    candidates = [(c["sample"], c["repair"], c["status"]) for c in reply["candidates"]]
    assert candidates == [(0, False, "error"), (0, True, "ok"), (1, False, "ok"), (2, False, "ok")]
    assert "NameError" in reply["candidates"][0]["error"]
    assert reply["candidates"][1]["value"] == -1.0
    assert reply["chosen"] == 2 and reply["program"] == reply["candidates"][2]["program"]
    vote = reply["vote"]
    assert [(g["votes"], g["samples"]) for g in vote["groups"]] == [(2, [1, 2]), (1, [0])]
    assert vote["voters"] == 3 and vote["description"].startswith("majority:")
    assert [r.body["temperature"] for r in requests] == [0, 0, 0.6, 0.6]
    assert "NameError" in requests[1].body["messages"][-2]["content"]  # the repair request
    assert "finmath_llm_repairs_total 1.0" in metrics
    assert "finmath_llm_samples_per_answer_sum 3.0" in metrics
    assert 'finmath_llm_ask_stage_seconds_count{stage="llm"} 1.0' in metrics
    assert 'finmath_sandbox_runs_total{status="ok"} 3.0' in metrics


def test_ask_without_an_endpoint_is_503_with_a_labelled_similar_example(
    ask_settings: Settings, tmp_path: Path
) -> None:
    record = VALIDATION[7]
    with service_process(ask_settings, tmp_path) as url:
        response = httpx.post(
            f"{url}/ask", json={"question": record["question"], "tables": record["tables"]}
        )
        predict = httpx.post(
            f"{url}/predict",
            json={
                "question": record["question"],
                "tables": record["tables"],
                "topic": record["topic"],
            },
        )
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "FINMATH_LLM_BASE_URL" in detail["message"]
    similar = detail["most_similar_solved_example"]
    assert "NOT an answer" in similar["note"]
    assert similar["question_id"] == record["question_id"]  # the bank holds the question itself
    assert "answer" not in detail
    assert predict.status_code == 200  # the answer model is unaffected
