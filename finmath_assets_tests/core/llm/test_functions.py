"""Retrieval of finance library functions with the real MiniLM embedder, the prompt block, and
the model's program calling an offered function in the real sandbox (the model is a scripted
stub); the paper's prompt stays without tools, and scoring runs the same source in front."""

from __future__ import annotations

import pytest

from finmath_assets.core.embeddings import Embedder
from finmath_assets.core.llm.answering import LLMAnswer, answer
from finmath_assets.core.llm.client import LLMClient
from finmath_assets.core.llm.functions import (
    FUNCTIONS_INTRO,
    LIBRARY,
    FunctionIndex,
    FunctionRetrieval,
    Offered,
    functions_block,
    preamble,
)
from finmath_assets.core.llm.prompts import PromptVariant
from finmath_assets.core.llm.scoring import score_output
from finmath_assets_tests.llm_stub import LLMStub, Recorded, Reply

BOND_QUESTION = (
    "What is the price of a bond with a face value of 100, an 8% annual coupon and ten years to "
    "maturity when its yield to maturity is 6%?"
)
BOND_PRICE = 114.7202
# the model names its result like the function: the offered name (calc_...) keeps that legal
CALLS_BOND_PRICE = (
    "```python\ndef solution():\n    bond_price = calc_bond_price(100, 0.08, 0.06, 10)\n"
    "    return bond_price\n```"
)


@pytest.fixture(scope="module")
def index(embedder: Embedder) -> FunctionIndex:
    return FunctionIndex.build(embedder)


def test_a_question_is_offered_the_functions_that_compute_it(
    index: FunctionIndex, embedder: Embedder
) -> None:
    offered = index.for_question(BOND_QUESTION, embedder, 2, 0.45)
    assert offered and offered[0].function.name == "calc_bond_price"
    assert all(o.similarity >= 0.45 for o in offered) and len(offered) <= 2
    ewma = "What weight does a RiskMetrics EWMA model with decay 0.94 give a 3-day-old return?"
    assert index.for_question(ewma, embedder, 1, 0.45)[0].function.name == "calc_ewma_weight"


def test_nothing_is_offered_below_the_similarity_floor(
    index: FunctionIndex, embedder: Embedder
) -> None:
    assert index.for_question("What is 6 times 7?", embedder, 3, 0.45) == []
    assert len(index.for_question("What is 6 times 7?", embedder, 3, -1.0)) == 3
    assert index.for_question(BOND_QUESTION, embedder, 0, -1.0) == []
    with pytest.raises(ValueError, match="count must be 0 or more"):
        index.search(index.vectors[0], -1, 0.0)


def test_an_index_of_another_embedding_model_is_refused(index: FunctionIndex) -> None:
    class Other:
        model_id = "another-model"

        def encode(self, texts):  # pragma: no cover - refused before encoding
            raise AssertionError

    with pytest.raises(ValueError, match="function index was built with"):
        index.for_question(BOND_QUESTION, Other(), 2, 0.45)


def test_the_prompt_shows_signatures_and_the_sandbox_gets_the_source() -> None:
    (entry,) = [f for f in LIBRARY if f.name == "calc_bond_price"]
    offered = [Offered(entry, 0.7)]
    block = functions_block(offered)
    assert block.startswith(FUNCTIONS_INTRO) and entry.header in block
    assert "return sum(" not in block  # the body is not shown, only the signature and docstring
    assert entry.source in preamble(offered) and preamble(offered).startswith("import math")
    assert functions_block([]) == "" and preamble([]) == ""


def ask_bond_question(
    variant: PromptVariant, retrieval: FunctionRetrieval, embedder: Embedder
) -> tuple[LLMAnswer, Recorded]:
    """The bond question answered by a stub whose program calls ``calc_bond_price``."""
    with LLMStub([Reply(CALLS_BOND_PRICE)]) as stub:
        with LLMClient(stub.base_url, "stub-model", max_retries=0) as client:
            result = answer(
                BOND_QUESTION,
                [],
                client=client,
                prompt_variant=variant,
                embedder=embedder,
                functions=retrieval,
            )
        (request,) = stub.chat_requests
    return result, request


def test_the_models_program_calls_an_offered_function(
    index: FunctionIndex, embedder: Embedder
) -> None:
    retrieval = FunctionRetrieval(index, count=2, min_similarity=0.45)
    result, request = ask_bond_question("improved", retrieval, embedder)
    assert (result.status, result.value) == ("ok", pytest.approx(BOND_PRICE, abs=1e-4))
    assert result.functions[0].name == "calc_bond_price"
    question_turn = [m for m in request.body["messages"] if m["role"] == "user"][-1]["content"]
    assert question_turn.index(BOND_QUESTION) < question_turn.index(FUNCTIONS_INTRO)
    assert "def calc_bond_price(" in question_turn
    # the evaluation scores the output as it ran: the offered source in front of the program
    assert score_output(result.raw_output or "", BOND_PRICE, preamble=result.preamble).correct
    unaided = score_output(result.raw_output or "", BOND_PRICE)
    assert not unaided.executed and "NameError" in unaided.reason


def test_the_papers_prompt_offers_no_functions(index: FunctionIndex, embedder: Embedder) -> None:
    result, request = ask_bond_question("paper", FunctionRetrieval(index), embedder)
    assert result.functions == () and result.preamble == ""
    assert FUNCTIONS_INTRO not in str(request.body["messages"])
    assert result.status == "error" and "NameError" in (result.error or "")


def test_offering_functions_needs_an_embedder(index: FunctionIndex) -> None:
    with (
        LLMStub([]) as stub,
        LLMClient(stub.base_url, "stub-model") as client,
        pytest.raises(ValueError, match="needs an embedder"),
    ):
        answer(
            BOND_QUESTION,
            [],
            client=client,
            prompt_variant="improved",
            functions=FunctionRetrieval(index),
        )
