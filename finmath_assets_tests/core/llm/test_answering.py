"""The program-of-thought answerer against a scripted OpenAI-compatible stub (no model): what the
requests carry, what comes back through the real sandbox, how failures end up; and retrieval of
solved examples from a small real warehouse (real records, real MiniLM embeddings)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pytest

from finmath_assets.core import sandbox
from finmath_assets.core.embeddings import Embedder
from finmath_assets.core.llm.answering import answer, program_problem
from finmath_assets.core.llm.client import LLMClient
from finmath_assets.core.llm.prompts import (
    IMPROVED_SYSTEM,
    PAPER_POT_SYSTEM,
    PROGRAM_PREFILL,
    build_prompt,
    paper_messages,
    solution_block,
)
from finmath_assets.core.llm.retrieval import ExampleBank, ExampleBankError
from finmath_assets.core.text import record_text, text_hash
from finmath_assets_tests.conftest import free_port, system_binary
from finmath_assets_tests.llm_stub import LLMStub, Reply

BANK_SIZE = 16  # validation-0 .. validation-15
QUESTION = "What is 6 times 7?"
RECORD_COLUMNS = (
    "split",
    "question_id",
    "question",
    "tables",
    "python_solution",
    "ground_truth",
    "topic",
)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture(scope="module", autouse=True)
def bubblewrap() -> None:
    system_binary("bwrap", "bubblewrap")
    assert sandbox.isolation() == "bubblewrap"


@pytest.fixture(scope="module")
def by_id(real_validation) -> dict[str, dict]:
    return {r["question_id"]: r for r in real_validation}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory, real_validation, real_test, embedder: Embedder) -> Path:
    """A warehouse shaped like the pipeline's: labelled records, two unlabelled ones (their
    python_solution is '', as the pipeline stores it), and every record's real embedding."""
    rows = [{**r, "split": "validation"} for r in real_validation[:BANK_SIZE]]
    rows += [{**r, "split": "test", "python_solution": ""} for r in real_test[:2]]
    texts = [record_text(r["question"], r["tables"]) for r in rows]
    vectors = embedder.encode(texts)
    path = tmp_path_factory.mktemp("llm") / "warehouse.duckdb"
    with duckdb.connect(str(path)) as connection:
        connection.execute("CREATE SCHEMA finmath")
        connection.execute(
            "CREATE TABLE finmath.validated_records (split VARCHAR, question_id VARCHAR, "
            "question VARCHAR, tables VARCHAR[], python_solution VARCHAR, ground_truth DOUBLE, "
            "topic VARCHAR)"
        )
        connection.execute(
            "CREATE TABLE finmath.question_embeddings (question_id VARCHAR, text_hash VARCHAR, "
            "model_id VARCHAR, embedding FLOAT[])"
        )
        connection.executemany(
            "INSERT INTO finmath.validated_records VALUES (?, ?, ?, ?, ?, ?, ?)",
            [tuple(r.get(c) for c in RECORD_COLUMNS) for r in rows],
        )
        connection.executemany(
            "INSERT INTO finmath.question_embeddings VALUES (?, ?, ?, ?)",
            [
                [r["question_id"], text_hash(t, embedder.model_id), embedder.model_id, v.tolist()]
                for r, t, v in zip(rows, texts, vectors, strict=True)
            ],
        )
    return path


@pytest.fixture(scope="module")
def bank(warehouse: Path) -> ExampleBank:
    return ExampleBank.load(warehouse)


def client_for(stub: LLMStub, **options) -> LLMClient:
    return LLMClient(stub.base_url, "qwen-test", **{"max_tokens": 300, **options})


# --- the prompts ------------------------------------------------------------------------------


def test_the_paper_prompt_is_financemath_s_verbatim(by_id) -> None:
    # digests of prepare_pot_model_input's output (yale-nlp/FinanceMath@bdddc58,
    # utils/model_input_utils.py) run on these records: with one table, none, and two
    assert sha256(PAPER_POT_SYSTEM) == (
        "b226262b9206de3e43c00a1c3383b9e304ded034f4d46686af5bcc569721c4a2"
    )
    expected_user = {
        "validation-0": "010031f2862243b7a4d0764022a0a68292b39502fb4132aa0d8825e5b61be8bc",
        "validation-1": "ed25d1e2d4e3500ec7d05918d42ad8d822392e171fee9412d6016b6737532f8b",
        "validation-13": "1861776da20126971ce4e8fc238d9f20eda48c881845111c00e13b97ac5e0bdb",
    }
    for question_id, digest in expected_user.items():
        record = by_id[question_id]
        system, user = paper_messages(record["question"], record["tables"])
        assert (system["role"], user["role"]) == ("system", "user")
        assert system["content"] == PAPER_POT_SYSTEM
        assert sha256(user["content"]) == digest, question_id
    # the original's quirk, kept: no newline between the intro and the first table
    (_, user) = paper_messages(by_id["validation-0"]["question"], by_id["validation-0"]["tables"])
    assert user["content"].startswith("The following table is provided for your reference.|")
    record = by_id["validation-1"]
    # the paper merges system and user for chat templates without a system role
    (merged,) = paper_messages(record["question"], [], model="mistralai/Mistral-7B-Instruct")
    assert merged["role"] == "user"
    assert sha256(merged["content"]) == (
        "ad4558fb5ba8f2c6f4a8cc56d76672fc104635d1eab99645f15b20904984f67c"
    )
    assert build_prompt("paper", record["question"], []).prefill is None
    with pytest.raises(ValueError, match="unknown prompt variant"):
        build_prompt("cot", QUESTION, [])  # type: ignore[arg-type]


def test_program_problem_only_accepts_a_parseable_solution_function() -> None:
    assert program_problem("def solution():\n    return 1\n") is None
    assert "no program" in program_problem("  \n")
    assert "does not parse" in program_problem("def solution():\n    The answer is 42.\n")
    assert "no solution()" in program_problem("def answer():\n    return 1\n")
    assert "does not parse" in program_problem("x = 1\x00")


# --- the client against the stub ----------------------------------------------------------------


def test_paper_variant_sends_the_paper_prompt_and_runs_the_returned_program(by_id) -> None:
    record = by_id["validation-0"]
    program = solution_block(record["python_solution"])
    with LLMStub([Reply(f"Here is the program:\n{program}\nDone.", completion_tokens=42)]) as stub:
        with client_for(stub) as client:
            result = answer(
                record["question"], record["tables"], client=client, prompt_variant="paper"
            )
        (request,) = stub.chat_requests
        listed = httpx.get(f"{stub.base_url}/models", timeout=5).json()
    assert listed["data"][0]["id"] == "stub-model"
    body = request.body
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("qwen-test", 0, 300)
    assert body["messages"] == paper_messages(record["question"], record["tables"])
    assert result.messages == body["messages"] and result.prefill is None
    assert (result.status, result.sandbox_status, result.isolation) == ("ok", "ok", "bubblewrap")
    assert result.value == pytest.approx(record["ground_truth"])  # -8184.0
    assert result.program.strip() == record["python_solution"].strip()
    assert result.raw_output.startswith("Here is the program:")
    assert result.raw_response["choices"][0]["message"]["content"] == result.raw_output
    assert (result.prompt_tokens, result.completion_tokens) == (11, 42)
    assert result.finish_reason == "stop" and result.retrieved == ()
    assert 0 < result.llm_seconds < result.total_seconds
    assert result.to_dict()["value"] == result.value


def test_improved_variant_sends_retrieved_solutions_and_the_prefill(by_id, bank, embedder) -> None:
    record = by_id["validation-3"]
    body_lines = record["python_solution"].split("\n", 1)[1]  # after "def solution():"
    with LLMStub([Reply(f"{body_lines}\n```\nThat computes it.")]) as stub:
        with client_for(stub) as client:
            result = answer(
                record["question"],
                record["tables"],
                client=client,
                prompt_variant="improved",
                bank=bank,
                embedder=embedder,
                k=2,
                exclude_id="validation-3",
            )
        (request,) = stub.chat_requests
    expected = bank.similar(
        record["question"], record["tables"], embedder, 2, exclude_id="validation-3"
    )
    retrieved_ids = [r.question_id for r in result.retrieved]
    assert retrieved_ids == [r.example.question_id for r in expected]
    assert len(retrieved_ids) == 2 and "validation-3" not in retrieved_ids
    assert [r.similarity for r in result.retrieved] == [r.similarity for r in expected]
    messages = request.body["messages"]
    assert messages[0] == {"role": "system", "content": IMPROVED_SYSTEM}
    assert messages[-1] == {"role": "assistant", "content": PROGRAM_PREFILL}
    assert record["question"].strip() in messages[-2]["content"]
    solutions = [m["content"] for m in messages if m["role"] == "assistant"][:-1]
    assert solutions == [solution_block(by_id[i]["python_solution"]) for i in retrieved_ids]
    assert result.messages == messages and result.prefill == PROGRAM_PREFILL
    assert result.raw_output.startswith(PROGRAM_PREFILL)
    assert program_problem(result.program_lenient) is None
    assert (result.status, result.value) == ("ok", pytest.approx(record["ground_truth"]))


def test_a_server_that_ignores_the_prefill_does_not_get_it_twice() -> None:
    whole = "```python\ndef solution():\n    return 6 * 7\n```"
    with LLMStub([Reply(whole)]) as stub, client_for(stub) as client:
        result = answer(QUESTION, [], client=client, prompt_variant="improved")
    assert result.raw_output == whole and (result.status, result.value) == ("ok", 42.0)


def test_chatml_prefill_mode_continues_an_open_assistant_turn_via_completions() -> None:
    body = "    a = 6\n    b = 7\n    return a * b\n```"
    with LLMStub([Reply(body)]) as stub:
        with LLMClient(stub.base_url, "stub-model", prefill_mode="chatml") as client:
            result = answer(QUESTION, [], client=client, prompt_variant="improved")
        (request,) = stub.text_requests
    assert stub.chat_requests == []
    prompt = request.body["prompt"]
    assert prompt.startswith("<|im_start|>system\n")
    assert prompt.endswith("<|im_start|>assistant\n" + PROGRAM_PREFILL)  # left open
    assert request.body["temperature"] == 0 and "<|im_end|>" in request.body["stop"]
    assert result.raw_output == PROGRAM_PREFILL + body
    assert (result.status, result.value) == ("ok", 42.0)


def test_a_paper_style_continuation_is_completed_by_the_papers_extraction() -> None:
    # the paper's prompt ends inside `def solution():`; models often just continue the body
    continuation = "    a = 6\n    b = 7\n    return a * b\n```\nThe answer is 42."
    with LLMStub([Reply(continuation)]) as stub, client_for(stub) as client:
        result = answer(QUESTION, [], client=client, prompt_variant="paper")
    assert result.program.startswith("def solution():")
    assert (result.status, result.value) == ("ok", 42.0)


def test_a_500_is_retried_and_the_second_answer_used() -> None:
    program = "```python\ndef solution():\n    return 6 * 7\n```"
    with LLMStub([Reply(status=500), Reply(program)]) as stub:
        with client_for(stub, max_retries=1) as client:
            result = answer(QUESTION, [], client=client, prompt_variant="paper")
        retries = [r.headers.get("x-stainless-retry-count") for r in stub.chat_requests]
    assert retries == ["0", "1"]
    assert (result.status, result.value) == ("ok", 42.0)


def test_a_slow_answer_hits_the_timeout_and_reports_an_llm_error() -> None:
    with LLMStub([Reply("```python\ndef solution():\n    return 1\n```", delay=10)]) as stub:
        started = time.perf_counter()
        with client_for(stub, timeout_seconds=0.5, max_retries=0) as client:
            result = answer(QUESTION, [], client=client, prompt_variant="paper")
        elapsed = time.perf_counter() - started
        base_url = stub.base_url
    assert elapsed < 3
    assert result.status == "llm_error" and result.value is None
    assert "timed out" in result.error and base_url in result.error and "qwen-test" in result.error
    assert result.raw_output is None and result.raw_response["error_kind"] == "timeout"
    assert result.messages[0]["content"] == PAPER_POT_SYSTEM  # what was asked is still kept


def test_unreachable_endpoints_and_http_errors_are_llm_errors() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with LLMClient(url, "qwen-test", max_retries=0, timeout_seconds=5) as client:
        result = answer(QUESTION, [], client=client, prompt_variant="paper")
    assert result.status == "llm_error" and "could not connect" in result.error
    assert url in result.error
    with LLMStub([Reply(status=404)]) as stub, client_for(stub, max_retries=0) as client:
        result = answer(QUESTION, [], client=client, prompt_variant="paper")
    assert result.status == "llm_error" and "HTTP 404" in result.error
    assert result.raw_response["status_code"] == 404
    assert result.raw_response["body"]["message"] == "stub error 404"
    with (
        LLMStub([Reply(raw=b"<html>proxy error</html>")]) as stub,
        client_for(stub, max_retries=0) as client,
    ):
        result = answer(QUESTION, [], client=client, prompt_variant="paper")
    assert result.status == "llm_error" and "not JSON" in result.error


def test_garbage_output_is_no_program_and_is_kept() -> None:
    garbage = "I am sorry, I cannot determine the answer from the information given."
    with LLMStub([Reply(garbage, finish_reason="stop")]) as stub, client_for(stub) as client:
        result = answer(QUESTION, [], client=client, prompt_variant="paper")
    assert result.status == "no_program" and result.value is None
    assert result.raw_output == garbage and "does not parse" in result.error
    assert result.sandbox_status is None and result.program_lenient is None  # nothing was run
    assert result.raw_response["choices"][0]["message"]["content"] == garbage


def test_a_failing_program_is_reported_by_the_sandbox() -> None:
    replies = [
        Reply("```python\ndef solution():\n    return 1 / 0\n```"),
        Reply("```python\ndef solution():\n    return 'about 42'\n```"),
    ]
    with LLMStub(replies) as stub, client_for(stub) as client:
        failed = answer(QUESTION, [], client=client, prompt_variant="paper")
        wordy = answer(QUESTION, [], client=client, prompt_variant="paper")
    assert failed.status == "error" and "ZeroDivisionError" in failed.error
    assert (wordy.status, wordy.value) == ("no_number", None)


def test_the_improved_prompt_needs_a_bank_to_retrieve_from() -> None:
    with LLMStub() as stub, client_for(stub) as client:
        with pytest.raises(ValueError, match="needs a bank"):
            answer(QUESTION, [], client=client, prompt_variant="improved", k=2)
        assert stub.requests == []


# --- retrieval ----------------------------------------------------------------------------------


def test_the_bank_holds_the_labelled_records_with_their_stored_vectors(
    bank, warehouse, by_id, embedder
) -> None:
    assert [e.question_id for e in bank.examples] == sorted(
        f"validation-{i}" for i in range(BANK_SIZE)
    )
    assert bank.model_id == embedder.model_id and bank.vectors.shape == (BANK_SIZE, 384)
    example = bank.examples[0]
    assert example.python_solution == by_id[example.question_id]["python_solution"]
    assert np.allclose(np.linalg.norm(bank.vectors, axis=1), 1, atol=1e-5)
    # loading left no connection open: the file can be opened for writing again right away
    with duckdb.connect(str(warehouse)) as connection:
        assert connection.execute("SELECT count(*) FROM finmath.validated_records").fetchone()
    with pytest.raises(ExampleBankError, match="no warehouse"):
        ExampleBank.load(warehouse.parent / "missing.duckdb")


def test_an_item_never_retrieves_itself_and_order_is_by_cosine(bank, by_id, embedder) -> None:
    records = [by_id[e.question_id] for e in bank.examples]
    queries = embedder.encode([record_text(r["question"], r["tables"]) for r in records])
    cosines = queries @ bank.vectors.T  # both unit length
    for record, query, row in zip(records, queries, cosines, strict=True):
        own = record["question_id"]
        (itself,) = bank.search(query, 1)  # a new embedding of the same text finds the record
        assert itself.example.question_id == own
        assert itself.similarity == pytest.approx(1, abs=1e-4)
        found = bank.search(query, 4, exclude_id=own)
        ids = [r.example.question_id for r in found]
        assert len(ids) == 4 and own not in ids
        ranked = [bank.examples[i].question_id for i in np.argsort(-row)]
        assert ids == [i for i in ranked if i != own][:4]
        similarities = [r.similarity for r in found]
        assert similarities == sorted(similarities, reverse=True)
        assert similarities == pytest.approx([row[bank.examples.index(r.example)] for r in found])
    for record, query in list(zip(records, queries, strict=True))[:3]:  # embeds the question
        own = record["question_id"]
        found = bank.similar(record["question"], record["tables"], embedder, 4, exclude_id=own)
        assert found == bank.search(query, 4, exclude_id=own)
    assert bank.search(queries[0], 0) == []
    assert len(bank.search(queries[0], 100, exclude_id=records[0]["question_id"])) == BANK_SIZE - 1


def test_retrieval_refuses_an_embedder_of_another_model(bank) -> None:
    class OtherModel:
        model_id = "some-other-model"

        def encode(self, texts):
            raise AssertionError("must not be called")

    with pytest.raises(ValueError, match="some-other-model"):
        bank.similar(QUESTION, [], OtherModel(), 2)
